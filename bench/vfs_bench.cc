// VFS shim benchmark (issue "VFS shim"): one-row transactions through the
// crsync VFS against the default VFS, on the same file system, same run.
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

}  // namespace
}  // namespace crsync

BENCHMARK_MAIN();
