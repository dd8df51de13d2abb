// engine/row_buf.h — rows held in memory that one SQL statement reads as a
// table: how the engine writes many metadata rows with one statement
// instead of one statement per row.
//
//   SELECT pk, meta, dbv, lo FROM crsync_rowbuf(?1)
//
// with ?1 bound by sqlite3_bind_pointer(stmt, 1, &buf, kRowBufPointerType,
// nullptr). The pointer type makes the table unusable from SQL text (a
// pointer cannot be forged there); without a pointer it has no rows. The
// RowBuf must outlive the statement's run (bind, step to the end, reset).
#ifndef CRSYNC_ENGINE_ROW_BUF_H_
#define CRSYNC_ENGINE_ROW_BUF_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

namespace crsync {

inline constexpr char kRowBufPointerType[] = "crsync_rowbuf";

struct RowBuf {
  struct Row {
    std::string pk;    // packed primary key
    std::string meta;  // encoded RowMeta (metadata rows) or empty (feed entries)
    int64_t dbv = 0;   // feed entries: db_version and run
    int64_t lo = 0;
  };
  std::vector<Row> rows;
};

// Registers the eponymous table-valued function crsync_rowbuf on `db`.
int RegisterRowBuf(sqlite3* db);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_ROW_BUF_H_
