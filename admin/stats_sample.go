package admin

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// The families the dashboard reads, and for each the label it splits by.
// Everything else in the Gatherer is ignored.
const (
	famQueries   = "anyfront_proxy_queries_total"
	famResponses = "anyfront_proxy_responses_total"
	famLocal     = "anyfront_proxy_local_answers_total"
	famDropped   = "anyfront_proxy_dropped_total"
	famCache     = "anyfront_proxy_cache_events_total"
	famLatency   = "anyfront_proxy_backend_latency_seconds"
	famXDP       = "anyfront_xdp_packets_total"
)

var statsDims = map[string]string{
	famQueries:   "transport",
	famResponses: "rcode",
	famLocal:     "reason",
	famDropped:   "reason",
	famCache:     "event",
	famXDP:       "verdict",
}

// localRcodes maps anyfront_proxy_local_answers_total reasons to the rcode
// of the answer anyfront sent.
var localRcodes = map[string]string{
	"acl_refused":         "REFUSED",
	"rule_refused":        "REFUSED",
	"formerr":             "FORMERR",
	"notimp":              "NOTIMP",
	"servfail_no_backend": "SERVFAIL",
	"servfail_shed":       "SERVFAIL",
	"servfail_exhausted":  "SERVFAIL",
	"rule_spoofed":        "NOERROR",
}

// point is one counter series at one gather. For histograms each bucket
// is a point with dim set to its upper bound ("+Inf" for the count).
type point struct {
	fam, dim string
	v        float64
}

// points flattens the families the dashboard reads into series key ->
// point, and says whether XDP counters are present.
func points(mfs []*dto.MetricFamily) (map[string]point, bool) {
	out := map[string]point{}
	xdp := false
	for _, mf := range mfs {
		name := mf.GetName()
		dimLabel, isCounter := statsDims[name]
		if !isCounter && name != famLatency {
			continue
		}
		xdp = xdp || name == famXDP
		for _, m := range mf.GetMetric() {
			key, dim := seriesKey(name, m.GetLabel(), dimLabel)
			if h := m.GetHistogram(); h != nil {
				for _, b := range h.GetBucket() {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out[key+"le="+le] = point{name, le, float64(b.GetCumulativeCount())}
				}
				out[key+"le=+Inf"] = point{name, "+Inf", float64(h.GetSampleCount())}
				continue
			}
			if c := m.GetCounter(); c != nil {
				out[key] = point{name, dim, c.GetValue()}
			}
		}
	}
	return out, xdp
}

// seriesKey identifies a series by its name and every label, and returns
// the value of dimLabel.
func seriesKey(name string, labels []*dto.LabelPair, dimLabel string) (string, string) {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	dim := ""
	for _, l := range labels {
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(l.GetValue())
		b.WriteByte(',')
		if l.GetName() == dimLabel {
			dim = l.GetValue()
		}
	}
	b.WriteByte('}')
	return b.String(), dim
}

// increase is how much a counter grew between two gathers. A series new
// since the previous gather started from zero (the proxy exports an rcode
// only once it has counted one), and one that went down was reset (a
// backend rebuilt by a reload): in both cases its whole value is new.
func increase(prev map[string]point, key string, cur float64) float64 {
	p, ok := prev[key]
	if !ok || cur < p.v {
		return cur
	}
	return cur - p.v
}

// sampleOf computes the rates between two gathers dt apart.
// xdp says whether the XDP verdict counters are exported.
func sampleOf(now time.Time, dt time.Duration, prev, cur map[string]point, xdp bool) StatsSample {
	sec := dt.Seconds()
	sums := map[string]map[string]float64{}
	for key, p := range cur {
		d := increase(prev, key, p.v)
		if d == 0 && p.fam != famLatency {
			// Buckets stay even when empty: each is the next one's
			// lower bound for the interpolation.
			continue
		}
		if sums[p.fam] == nil {
			sums[p.fam] = map[string]float64{}
		}
		sums[p.fam][p.dim] += d
	}
	rate := func(m map[string]float64) map[string]float64 {
		if len(m) == 0 {
			return nil
		}
		out := make(map[string]float64, len(m))
		for k, v := range m {
			out[k] = round3(v / sec)
		}
		return out
	}
	s := StatsSample{T: now.Unix(), Transport: rate(sums[famQueries]), Cache: rate(sums[famCache])}
	var queries, dropped float64
	for _, v := range sums[famQueries] {
		queries += v
	}
	for _, v := range sums[famDropped] {
		dropped += v
	}
	rcodes := map[string]float64{}
	for rc, v := range sums[famResponses] {
		rcodes[rc] += v
	}
	for reason, v := range sums[famLocal] {
		if rc, ok := localRcodes[reason]; ok {
			rcodes[rc] += v
		}
	}
	s.Rcode = rate(rcodes)
	s.QPS, s.Dropped = round3(queries/sec), round3(dropped/sec)
	s.ServFail = round3(rcodes["SERVFAIL"] / sec)
	if queries > 0 {
		s.ServFailRatio = ptr(round6(math.Min(1, rcodes["SERVFAIL"]/queries)))
	}
	if c := sums[famCache]; c["hit"]+c["miss"] > 0 {
		s.CacheHitRatio = ptr(round6(c["hit"] / (c["hit"] + c["miss"])))
	}
	if h := sums[famLatency]; h["+Inf"] > 0 {
		if q, ok := quantile(0.5, h); ok {
			s.P50MS = ptr(round3(q * 1000))
		}
		if q, ok := quantile(0.99, h); ok {
			s.P99MS = ptr(round3(q * 1000))
		}
	}
	if xdp {
		s.XDP = rate(sums[famXDP])
		if s.XDP == nil {
			s.XDP = map[string]float64{}
		}
	}
	return s
}

// quantile estimates the q-quantile from cumulative bucket increases keyed
// by upper bound ("+Inf" is the total), as Prometheus's histogram_quantile
// does: linear interpolation inside the bucket holding the rank, the
// lowest bucket starting at 0, and the highest finite bound when the rank
// falls in +Inf.
func quantile(q float64, buckets map[string]float64) (float64, bool) {
	total := buckets["+Inf"]
	if total <= 0 {
		return 0, false
	}
	type bucket struct{ le, cum float64 }
	bs := make([]bucket, 0, len(buckets))
	for k, v := range buckets {
		le, err := strconv.ParseFloat(k, 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if math.IsInf(b.le, 1) {
			break
		}
		if b.cum >= rank && b.cum > below {
			return lower + (b.le-lower)*(rank-below)/(b.cum-below), true
		}
		lower, below = b.le, b.cum
	}
	// The rank is beyond every finite bucket: the best answer is "at
	// least the highest bound".
	return lower, true
}

func ptr(v float64) *float64 { return &v }

func round3(v float64) float64 { return math.Round(v*1e3) / 1e3 }
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }
