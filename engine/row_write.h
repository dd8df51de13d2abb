// engine/row_write.h — what merging changes does to one user row.
#ifndef CRSYNC_ENGINE_ROW_WRITE_H_
#define CRSYNC_ENGINE_ROW_WRITE_H_

#include <utility>
#include <vector>

#include "engine/value.h"

namespace crsync {

// The user-table write of a row's merged changes, applied in one go: an
// optional DELETE first, then (if the row exists at the end) an upsert of
// the columns written after it, or an insert of the bare pk. A touched
// write has delete_first or exists set.
struct RowWrite {
  bool delete_first = false;
  bool exists = false;   // the row must exist afterwards
  bool touched = false;  // anything to do at all
  std::vector<std::pair<int, Value>> values;  // slot -> value, last write wins

  void Reset() {
    delete_first = exists = touched = false;
    values.clear();
  }
  const Value* Written(int slot) const {
    for (const auto& [s, v] : values)
      if (s == slot) return &v;
    return nullptr;
  }
  void Set(int slot, const Value& v) {
    for (auto& [s, old] : values) {
      if (s == slot) {
        old = v;
        return;
      }
    }
    values.emplace_back(slot, v);
  }
  // This write followed by `later` (same row, touched) as one write: a
  // later delete replaces everything before it; otherwise the later
  // values overwrite.
  void Then(const RowWrite& later) {
    if (later.delete_first) {
      *this = later;
      return;
    }
    touched = true;
    exists = true;
    for (const auto& [s, v] : later.values) Set(s, v);
  }
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_ROW_WRITE_H_
