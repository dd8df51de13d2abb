// VFS shim benchmark (issue "VFS shim"): one-row transactions through the
// crsync VFS against the default VFS, on the same file system, same run.
#include <chrono>

#include "bench/bench_util.h"
#include "crsync/vfs.h"

namespace crsync {
namespace {

void BM_VfsOneRowTxns5k(benchmark::State& state, bool shim) {
  if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) {
    state.SkipWithError("cannot register the crsync VFS");
    return;
  }
  int txns = BenchRows(100000) / 20;
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(false, shim ? "vfs-shim" : "vfs-default", shim ? CRSYNC_VFS_NAME : nullptr);
      db.Exec(kItemsSql);
      state.ResumeTiming();
      InsertItems(db, txns);  // autocommit: one commit (and one signal) per row
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * txns);
}
BENCHMARK_CAPTURE(BM_VfsOneRowTxns5k, default_vfs, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_VfsOneRowTxns5k, crsync_vfs, true)->Unit(benchmark::kMillisecond)->UseRealTime();

// Both VFSs in every iteration, alternating which goes first, so machine
// drift hits both alike; reports each median-free mean and their ratio.
void BM_VfsOneRowTxns5k_interleaved(benchmark::State& state) {
  if (crsync_vfs_register(nullptr, 0) != SQLITE_OK) {
    state.SkipWithError("cannot register the crsync VFS");
    return;
  }
  int txns = BenchRows(100000) / 20;
  double t_default = 0, t_shim = 0;
  int64_t round = 0;
  for (auto _ : state) {
    for (int k = 0; k < 2; ++k) {
      bool shim = (k + round) % 2 == 1;
      BenchDb db(false, shim ? "vfs-shim" : "vfs-default", shim ? CRSYNC_VFS_NAME : nullptr);
      db.Exec(kItemsSql);
      auto t0 = std::chrono::steady_clock::now();
      InsertItems(db, txns);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      (shim ? t_shim : t_default) += ms;
    }
    ++round;
  }
  state.counters["default_ms"] = t_default / static_cast<double>(round);
  state.counters["crsync_ms"] = t_shim / static_cast<double>(round);
  state.counters["ratio"] = t_shim / t_default;
}
BENCHMARK(BM_VfsOneRowTxns5k_interleaved)->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace
}  // namespace crsync

BENCHMARK_MAIN();
