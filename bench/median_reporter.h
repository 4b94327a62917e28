// Collects every repetition's rate (operations per wall-clock second) per
// benchmark, keyed "function" or "function/args", and gives the median: on a
// shared 2-core VM single runs move by +-20%.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace devid::bench {

class MedianReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.iterations > 0 && r.real_accumulated_time > 0 && r.run_type == Run::RT_Iteration) {
        std::string key =
            r.run_name.function_name + (r.run_name.args.empty() ? "" : "/" + r.run_name.args);
        rates_[key].push_back(static_cast<double>(r.iterations) / r.real_accumulated_time);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // 0 when the benchmark did not run.
  double Median(const std::string& key) const {
    auto it = rates_.find(key);
    if (it == rates_.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }

 private:
  std::map<std::string, std::vector<double>> rates_;
};

}  // namespace devid::bench
