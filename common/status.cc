#include "crsync/status.h"

#include <sqlite3.h>

namespace crsync {

int Status::sqlite_code() const noexcept {
  switch (code_) {
    case Code::kOk:
      return SQLITE_OK;
    case Code::kSqlite:
      return rc_;
    case Code::kNotFound:
      return SQLITE_NOTFOUND;
    case Code::kCorruption:
      return SQLITE_CORRUPT;
    case Code::kIOError:
      return SQLITE_IOERR;
    case Code::kInvalidArgument:
    case Code::kTransport:
    case Code::kFailedPrecondition:
      return SQLITE_ERROR;
  }
  return SQLITE_ERROR;
}

std::string Status::ToString() const {
  const char* name = "Unknown";
  switch (code_) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      name = "NotFound";
      break;
    case Code::kInvalidArgument:
      name = "InvalidArgument";
      break;
    case Code::kCorruption:
      name = "Corruption";
      break;
    case Code::kIOError:
      name = "IOError";
      break;
    case Code::kSqlite:
      name = "SQLite";
      break;
    case Code::kTransport:
      name = "Transport";
      break;
    case Code::kFailedPrecondition:
      name = "FailedPrecondition";
      break;
  }
  std::string out(name);
  if (code_ == Code::kSqlite) {
    out += " (";
    out += std::to_string(rc_);
    out += " ";
    out += sqlite3_errstr(rc_);
    out += ")";
  }
  out += ": ";
  out += msg_;
  return out;
}

Status Status::WithContext(std::string_view prefix) const {
  if (ok()) return *this;
  std::string msg(prefix);
  msg += ": ";
  msg += msg_;
  return Status(code_, rc_, msg);
}

}  // namespace crsync
