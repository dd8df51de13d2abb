// engine/write_log.h — the local writes a transaction captured, packed.
//
// The recording triggers append one write per row (engine/recorder.cc).
// A bulk load appends millions, so each costs a fixed 40-byte entry plus
// its key bytes and changed slots in shared buffers: no allocation per
// write, and no per-element copies when the buffers grow.
//
// Thread safety: none; one per connection.
#ifndef CRSYNC_ENGINE_WRITE_LOG_H_
#define CRSYNC_ENGINE_WRITE_LOG_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace crsync {

class WriteLog {
 public:
  // One write, as a view: the bytes belong to whoever built it, or to the
  // log (valid until the log is next added to, truncated or cleared).
  struct Write {
    enum Op : uint8_t { kInsert, kUpdate, kDelete };
    Op op = kInsert;
    bool moved = false;  // an update that changed the pk
    int64_t crr_id = 0;
    std::string_view key;              // packed pk (the new one for updates)
    std::string_view old_key;          // moved updates: the old packed pk
    std::span<const uint32_t> changed;  // updates: slots whose value changed
  };

  void Add(const Write& w) {
    Entry e;
    e.crr_id = w.crr_id;
    e.key_off = keys_.size();
    e.key_len = static_cast<uint32_t>(w.key.size());
    e.old_len = static_cast<uint32_t>(w.old_key.size());
    e.changed_off = changed_.size();
    e.changed_n = static_cast<uint32_t>(w.changed.size());
    e.op = w.op;
    e.moved = w.moved;
    keys_.append(w.key);
    keys_.append(w.old_key);
    changed_.insert(changed_.end(), w.changed.begin(), w.changed.end());
    entries_.push_back(e);
  }
  Write operator[](size_t i) const {
    const Entry& e = entries_[i];
    Write w;
    w.op = static_cast<Write::Op>(e.op);
    w.moved = e.moved;
    w.crr_id = e.crr_id;
    w.key = std::string_view(keys_).substr(e.key_off, e.key_len);
    w.old_key = std::string_view(keys_).substr(e.key_off + e.key_len, e.old_len);
    w.changed = std::span<const uint32_t>(changed_.data() + e.changed_off, e.changed_n);
    return w;
  }
  // Write i's key alone (what operator[] would give as .key), for scans
  // that look at nothing else.
  std::string_view key(size_t i) const {
    const Entry& e = entries_[i];
    return std::string_view(keys_).substr(e.key_off, e.key_len);
  }
  size_t size() const { return entries_.size(); }
  // Drops the writes from index n on.
  void Truncate(size_t n) {
    if (n >= entries_.size()) return;
    keys_.resize(entries_[n].key_off);
    changed_.resize(entries_[n].changed_off);
    entries_.resize(n);
  }
  // Drops the writes before index n (renumbering the rest from 0).
  void DropPrefix(size_t n) {
    if (n == 0) return;
    if (n >= entries_.size()) {
      Clear();
      return;
    }
    const uint64_t key_cut = entries_[n].key_off, changed_cut = entries_[n].changed_off;
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(n));
    keys_.erase(0, key_cut);
    changed_.erase(changed_.begin(), changed_.begin() + static_cast<std::ptrdiff_t>(changed_cut));
    for (Entry& e : entries_) {
      e.key_off -= key_cut;
      e.changed_off -= changed_cut;
    }
  }
  // Forgets every write, keeping the buffers for the next transaction.
  void Clear() {
    entries_.clear();
    keys_.clear();
    changed_.clear();
  }

 private:
  struct Entry {
    int64_t crr_id;
    uint64_t key_off;  // key, then old_key, in keys_
    uint64_t changed_off;
    uint32_t key_len, old_len, changed_n;
    uint8_t op;
    bool moved;
  };
  std::vector<Entry> entries_;
  std::string keys_;
  std::vector<uint32_t> changed_;
};

}  // namespace crsync

#endif  // CRSYNC_ENGINE_WRITE_LOG_H_
