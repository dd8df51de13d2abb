// engine/trigger_order.cc — see engine/trigger_order.h.
#include "engine/trigger_order.h"

#include <cstring>
#include <string>

#include "crsync/sqlite_handles.h"

namespace crsync {

namespace {

struct Token {
  enum Kind { kWord, kQuoted, kString, kPunct, kEnd } kind;
  std::string_view text;
};

bool IsWordChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
         u == '_' || u == '$' || u >= 0x80;
}

bool Is(const Token& t, const char* word) {
  return t.kind == Token::kWord && t.text.size() == std::strlen(word) &&
         sqlite3_strnicmp(t.text.data(), word, static_cast<int>(t.text.size())) == 0;
}

// SQL tokens, enough to find keywords: comments and whitespace skipped,
// quoted names and string literals kept whole.
class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Token Next() {
    SkipSpaceAndComments();
    if (i_ >= s_.size()) return {Token::kEnd, {}};
    const size_t start = i_;
    const char c = s_[i_];
    if (c == '\'' || c == '"' || c == '`') {
      SkipQuoted(c);
      return {c == '\'' ? Token::kString : Token::kQuoted, s_.substr(start, i_ - start)};
    }
    if (c == '[') {
      while (i_ < s_.size() && s_[i_] != ']') ++i_;
      if (i_ < s_.size()) ++i_;
      return {Token::kQuoted, s_.substr(start, i_ - start)};
    }
    if (IsWordChar(c)) {
      while (i_ < s_.size() && IsWordChar(s_[i_])) ++i_;
      return {Token::kWord, s_.substr(start, i_ - start)};
    }
    ++i_;
    return {Token::kPunct, s_.substr(start, 1)};
  }

 private:
  void SkipSpaceAndComments() {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        ++i_;
      } else if (s_.compare(i_, 2, "--") == 0) {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (s_.compare(i_, 2, "/*") == 0) {
        const size_t end = s_.find("*/", i_ + 2);
        i_ = end == std::string_view::npos ? s_.size() : end + 2;
      } else {
        return;
      }
    }
  }
  // From an opening quote to past its closing one (a doubled quote is one).
  void SkipQuoted(char q) {
    ++i_;
    while (i_ < s_.size()) {
      if (s_[i_] == q) {
        if (i_ + 1 < s_.size() && s_[i_ + 1] == q) {
          i_ += 2;
          continue;
        }
        ++i_;
        return;
      }
      ++i_;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

bool IsPunct(const Token& t, char c) { return t.kind == Token::kPunct && t.text[0] == c; }

}  // namespace

TriggerSqlTraits InspectTriggerSql(std::string_view create_sql) {
  TriggerSqlTraits traits;
  Lexer lx(create_sql);
  // CREATE [TEMP | TEMPORARY] TRIGGER [IF NOT EXISTS] [schema .] name
  lx.Next();
  Token t = lx.Next();
  if (Is(t, "TEMP") || Is(t, "TEMPORARY")) t = lx.Next();
  t = lx.Next();  // past TRIGGER
  if (Is(t, "IF")) {
    lx.Next();
    lx.Next();
    t = lx.Next();
  }
  Token u = lx.Next();
  if (IsPunct(u, '.')) {
    lx.Next();
    u = lx.Next();
  }
  traits.after = Is(u, "AFTER");
  if (Is(u, "AFTER") || Is(u, "BEFORE")) {
    u = lx.Next();
  } else if (Is(u, "INSTEAD")) {
    lx.Next();  // OF
    u = lx.Next();
  }
  for (const char* event : {"INSERT", "UPDATE", "DELETE"}) {
    if (Is(u, event)) traits.event = event;
  }
  // ... ON [schema .] table
  Token on = u;
  while (on.kind != Token::kEnd && !Is(on, "ON")) on = lx.Next();
  if (on.kind != Token::kEnd) {
    const Token first = lx.Next();
    u = lx.Next();
    if (IsPunct(u, '.')) {
      std::string_view name = first.text;
      if (first.kind == Token::kQuoted && name.size() >= 2) name = name.substr(1, name.size() - 2);
      traits.on_schema.assign(name);
      u = lx.Next();
    }
  }
  // RAISE ( IGNORE | FAIL anywhere in the body
  Token before_last{Token::kEnd, {}}, last{Token::kEnd, {}};
  for (Token cur = u; cur.kind != Token::kEnd; cur = lx.Next()) {
    if (Is(before_last, "RAISE") && IsPunct(last, '(') && (Is(cur, "IGNORE") || Is(cur, "FAIL"))) {
      traits.stops_rows = true;
    }
    before_last = last;
    last = cur;
  }
  return traits;
}

namespace {

// Calls fn(name, traits, temp) for each trigger on main's `table` that
// fires before its recording triggers, newest first, as SQLite fires them:
// TEMP triggers on main's table, then main's made after the recording
// triggers, by descending rowid (a schema is loaded in rowid order, each
// trigger put in front of the table's list). fn returns false to stop.
template <typename Fn>
Status ForEachTriggerBeforeRecorders(sqlite3* db, const std::string& table, Fn fn) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(
      db,
      "SELECT name, sql, 1 AS temp, 0 AS r, EXISTS (SELECT 1 FROM temp.sqlite_master WHERE "
      "type = 'table' AND name = ?1 COLLATE NOCASE) FROM temp.sqlite_master WHERE type = "
      "'trigger' AND tbl_name = ?1 COLLATE NOCASE "
      "UNION ALL "
      "SELECT name, sql, 0, rowid, 0 FROM main.sqlite_master WHERE type = 'trigger' "
      "AND tbl_name = ?1 COLLATE NOCASE AND lower(substr(name, 1, length(?2))) != lower(?2) "
      "AND rowid > (SELECT min(rowid) FROM main.sqlite_master WHERE type = 'trigger' AND "
      "name COLLATE NOCASE IN (?2 || 'itrig', ?2 || 'utrig', ?2 || 'dtrig')) "
      "ORDER BY temp DESC, r DESC",
      &st));
  const std::string own = table + "__crsync_";
  sqlite3_bind_text(st.get(), 1, table.data(), static_cast<int>(table.size()), SQLITE_STATIC);
  sqlite3_bind_text(st.get(), 2, own.data(), static_cast<int>(own.size()), SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    const bool temp = sqlite3_column_int(st.get(), 2) != 0;
    const char* sql = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1));
    const TriggerSqlTraits traits = InspectTriggerSql(sql ? sql : "");
    if (temp) {
      // A TEMP trigger names its table's schema, or means the first table
      // of that name: a TEMP table shadowing main's, when there is one.
      const bool on_main = traits.on_schema.empty()
                               ? sqlite3_column_int(st.get(), 4) == 0
                               : sqlite3_stricmp(traits.on_schema.c_str(), "main") == 0;
      if (!on_main) continue;
    }
    const char* name = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
    if (!fn(std::string(name ? name : ""), traits, temp)) return Status::OK();
  }
  return rc == SQLITE_DONE ? Status::OK() : SqliteError(db, rc);
}

}  // namespace

Status RecordersFirstRefusal(sqlite3* db, const std::string& table, const char* event,
                             std::string* refusal) {
  refusal->clear();
  return ForEachTriggerBeforeRecorders(
      db, table, [&](const std::string& name, const TriggerSqlTraits& traits, bool temp) {
        if (!traits.after || !traits.stops_rows || traits.event != event) return true;
        *refusal = "crsql - " + std::string(temp ? "TEMP trigger " : "trigger ") + name + " on " +
                   table + " fires before crsync's recording triggers (" +
                   (temp ? "TEMP triggers fire before main's" : "it was made after them") +
                   ") and may stop a row it follows with RAISE(IGNORE) or RAISE(FAIL), leaving "
                   "that write unrecorded; " +
                   (temp ? "make it in main instead, then call" : "call") +
                   " SELECT crsql_as_crr(" + QuoteLiteral(table) +
                   ") again to have the recording triggers fire first";
        return false;
      });
}

Status UserTriggersFireFirst(sqlite3* db, const std::string& table, bool* yes) {
  *yes = false;
  return ForEachTriggerBeforeRecorders(
      db, table, [&](const std::string&, const TriggerSqlTraits&, bool temp) {
        if (!temp) *yes = true;
        return !*yes;
      });
}

}  // namespace crsync
