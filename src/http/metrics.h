// Counters and latency histograms in the Prometheus text format (/metrics).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace devid::http {

class Metrics {
 public:
  // A counter; `labels` is the label set as Prometheus writes it: method="GET",route="/healthz".
  void Increment(const std::string& name, const std::string& labels = "", double by = 1);
  void Observe(const std::string& name, const std::string& labels, double seconds);
  std::string Render() const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // per kBuckets bound, cumulative at render time
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, double>> counters_;
  std::map<std::string, std::map<std::string, Histogram>> histograms_;
};

}  // namespace devid::http
