// tests/change_util.h — building a Change (the ChangeApplier / wire form of
// one crsql_changes row) in tests and fuzz targets. No gtest here: the fuzz
// targets include it too.
#ifndef CRSYNC_TESTS_CHANGE_UTIL_H_
#define CRSYNC_TESTS_CHANGE_UTIL_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "crsync/engine.h"

namespace crsync {

// The packed pk of a one-column integer key 1..127.
inline std::string SmallIntPk(int id) { return std::string("\x01\x09", 2) + static_cast<char>(id); }

// A change setting column `cid` of the row `pk` of `table` to the text
// `text`, made by `site_id` at `db_version`, in a live row (cl 1), seq 0.
// Tests set any other field on the result.
inline Change TextChange(std::string table, std::string pk, std::string cid, std::string text,
                         int64_t col_version, int64_t db_version, std::string site_id) {
  Change c;
  c.table = std::move(table);
  c.pk = std::move(pk);
  c.cid = std::move(cid);
  c.val_type = SQLITE_TEXT;
  c.val_bytes = std::move(text);
  c.col_version = col_version;
  c.db_version = db_version;
  c.site_id = std::move(site_id);
  c.cl = 1;
  return c;
}

// The same with an integer value.
inline Change IntegerChange(std::string table, std::string pk, std::string cid, int64_t value,
                            int64_t col_version, int64_t db_version, std::string site_id) {
  Change c = TextChange(std::move(table), std::move(pk), std::move(cid), "", col_version,
                        db_version, std::move(site_id));
  c.val_type = SQLITE_INTEGER;
  c.val_int = value;
  return c;
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_CHANGE_UTIL_H_
