// crsync/status.h — the result type of every fallible crsync operation.
//
// A Status is either OK or carries a code, an optional SQLite result code and a
// message. It is [[nodiscard]]: a caller must look at it, or say explicitly that
// it does not care with IgnoreError().
//
// An OK status is one null pointer: making, moving, testing and destroying it
// cost a few instructions, which matters on paths run per row. The details of
// an error live on the heap.
//
// Thread safety: a Status is a value; distinct objects may be used from
// distinct threads without synchronisation.
#ifndef CRSYNC_STATUS_H_
#define CRSYNC_STATUS_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace crsync {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kInvalidArgument,  // bad input from a caller or a peer; nothing was changed
    kCorruption,       // stored or received data violates a format
    kIOError,
    kSqlite,           // an SQLite call failed; sqlite_code() says how
    kTransport,
    // This database refuses the operation until something is fixed here
    // (a CRR altered without crsql_begin_alter/commit_alter, or whose
    // alter is open on another connection); the input itself is fine.
    kFailedPrecondition,
  };

  // An OK status. Cheap: no allocation.
  Status() noexcept = default;
  Status(const Status& other) : rep_(other.rep_ ? new Rep(*other.rep_) : nullptr) {}
  Status& operator=(const Status& other) {
    if (this != &other) rep_.reset(other.rep_ ? new Rep(*other.rep_) : nullptr);
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() noexcept { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, 0, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, 0, msg);
  }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, 0, msg); }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, 0, msg); }
  static Status Transport(std::string_view msg) { return Status(Code::kTransport, 0, msg); }
  static Status FailedPrecondition(std::string_view msg) {
    return Status(Code::kFailedPrecondition, 0, msg);
  }
  // `rc` is an SQLite (extended) result code other than SQLITE_OK. `msg` is
  // copied at once, because sqlite3_errmsg() text dies with the next API call.
  static Status Sqlite(int rc, std::string_view msg) { return Status(Code::kSqlite, rc, msg); }

  bool ok() const noexcept { return rep_ == nullptr; }
  Code code() const noexcept { return rep_ ? rep_->code : Code::kOk; }
  // The SQLite result code this status maps to: the stored one for kSqlite,
  // SQLITE_OK (0) for OK, SQLITE_ERROR/SQLITE_CORRUPT/... for the others.
  int sqlite_code() const noexcept;
  // Empty for OK.
  const std::string& message() const noexcept { return rep_ ? rep_->msg : EmptyMessage(); }

  // "OK", or "<code name>: <message>" (with the SQLite code for kSqlite).
  std::string ToString() const;

  // Returns a copy whose message is `prefix` + ": " + the message.
  Status WithContext(std::string_view prefix) const;

  // Marks a deliberately ignored status; greppable.
  void IgnoreError() const noexcept {}

 private:
  struct Rep {
    Code code;
    int rc;
    std::string msg;
  };
  // `code` is never kOk.
  Status(Code code, int rc, std::string_view msg)
      : rep_(new Rep{code, rc, std::string(msg)}) {}
  static const std::string& EmptyMessage() noexcept;

  std::unique_ptr<Rep> rep_;  // null: OK
};

}  // namespace crsync

// Evaluates `expr` (a Status) and returns it from the calling function if it
// is not OK.
#define CRSYNC_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::crsync::Status crsync_status_ = (expr);   \
    if (!crsync_status_.ok()) return crsync_status_; \
  } while (0)

#endif  // CRSYNC_STATUS_H_
