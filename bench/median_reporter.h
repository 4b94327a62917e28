// Collects every repetition's rate (operations per wall-clock second) per
// benchmark, keyed "function" or "function/args", and gives the median: on a
// shared 2-core VM single runs move by +-20%.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace devid::bench {

// A benchmark's set-up either works or ends the run with the reason.
inline void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << "bench set-up failed: " << what << ": " << s.error().message << "\n";
    std::abort();
  }
}
template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) Check(r.error(), what);
  return std::move(r).value();
}

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

// Runs every registered benchmark into `reporter`. With --smoke (CTest's run)
// each case runs briefly once, only to show it works; otherwise `repetitions`
// randomly interleaved repetitions feed the medians.
inline void RunBenchmarks(int argc, char** argv, int repetitions, MedianReporter& reporter) {
  std::vector<std::string> args;
  bool smoke = false;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--smoke") {
      smoke = true;
    } else {
      args.emplace_back(argv[i]);
    }
  }
  if (!smoke) {
    args.insert(args.begin() + 1, {"--benchmark_repetitions=" + std::to_string(repetitions),
                                   "--benchmark_enable_random_interleaving=true",
                                   "--benchmark_report_aggregates_only=false"});
  }
  std::vector<char*> pointers;
  for (std::string& a : args) pointers.push_back(a.data());
  int n = static_cast<int>(pointers.size());
  benchmark::Initialize(&n, pointers.data());
  benchmark::RunSpecifiedBenchmarks(&reporter);
}

}  // namespace devid::bench
