// Replay driver for the fuzz targets when libFuzzer is not used: runs the
// target over every file of the given corpus folders, then over deterministic
// mutations of each (bit flips, truncations, splices), so that every
// `make test` (and its ASan/UBSan run) exercises the parsers on hostile bytes.
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
void Run(const std::vector<uint8_t>& input) { LLVMFuzzerTestOneInput(input.data(), input.size()); }
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::vector<uint8_t>> corpus;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path root(argv[i]);
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(root)) {
      for (const auto& e : std::filesystem::directory_iterator(root)) files.push_back(e.path());
    } else {
      files.push_back(root);
    }
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no corpus files given\n");
    return 2;
  }
  std::mt19937 rng(20261126);
  size_t runs = 0;
  Run({});
  for (const auto& seed : corpus) {
    Run(seed);
    ++runs;
    for (int m = 0; m < 300; ++m) {
      std::vector<uint8_t> x = seed;
      switch (rng() % 4) {
        case 0:  // flip 1-4 bits
          for (unsigned k = 0, n = 1 + rng() % 4; k < n && !x.empty(); ++k)
            x[rng() % x.size()] ^= 1u << (rng() % 8);
          break;
        case 1:  // truncate
          if (!x.empty()) x.resize(rng() % x.size());
          break;
        case 2:  // set a byte to an interesting value (lengths, tags)
          if (!x.empty())
            x[rng() % x.size()] = static_cast<uint8_t>(
                std::array<int, 6>{0x00, 0x7F, 0x80, 0x81, 0xFF, 0x30}[rng() % 6]);
          break;
        default: {  // splice with another seed
          const auto& other = corpus[rng() % corpus.size()];
          if (!x.empty() && !other.empty()) {
            size_t cut = rng() % x.size();
            x.resize(cut);
            size_t from = rng() % other.size();
            x.insert(x.end(), other.begin() + static_cast<long>(from), other.end());
          }
        }
      }
      Run(x);
      ++runs;
    }
  }
  std::printf("%zu inputs replayed without a crash\n", runs);
  return 0;
}
