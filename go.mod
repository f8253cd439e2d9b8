module github.com/anyfront/anyfront

go 1.26.8

require (
	github.com/hashicorp/go-memdb v1.3.5
	github.com/miekg/dns v1.1.73
	golang.org/x/sync v0.24.0
	golang.org/x/sys v0.49.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/hashicorp/go-immutable-radix v1.3.1 // indirect
	github.com/hashicorp/golang-lru v0.5.4 // indirect
	golang.org/x/net v0.57.0 // indirect
)
