#include "crsync/status.h"

#include <sqlite3.h>

namespace crsync {

const std::string& Status::EmptyMessage() noexcept {
  static const std::string* const empty = new std::string();
  return *empty;
}

int Status::sqlite_code() const noexcept {
  switch (code()) {
    case Code::kOk:
      return SQLITE_OK;
    case Code::kSqlite:
      return rep_->rc;
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
  switch (code()) {
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
  if (rep_->code == Code::kSqlite) {
    out += " (";
    out += std::to_string(rep_->rc);
    out += " ";
    out += sqlite3_errstr(rep_->rc);
    out += ")";
  }
  out += ": ";
  out += rep_->msg;
  return out;
}

Status Status::WithContext(std::string_view prefix) const {
  if (ok()) return *this;
  std::string msg(prefix);
  msg += ": ";
  msg += rep_->msg;
  return Status(rep_->code, rep_->rc, msg);
}

}  // namespace crsync
