# The two set-up commands are `make run` and `make test`; the rest are their parts.
.PHONY: deps build run test test-release test-asan bench format clean

deps:
	@scripts/deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release

run: build
	@scripts/run-demo.sh

test: build
	@ctest --preset release
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan
	@ctest --preset asan
	@scripts/fuzz-smoke.sh

bench: build
	@build/bench/devid_bench
	@build/bench/devid_bench_se
	@build/bench/devid_bench_tls
	@build/bench/devid_bench_ocsp
	@build/bench/devid_bench_cms
	@build/bench/devid_bench_fleet

format:
	@find src tests bench fuzz -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf build build-debug build-asan
