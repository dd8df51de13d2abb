// changes_insert_fuzz: INSERT INTO crsql_changes with arbitrary rows, on an
// in-memory database with three CRRs (an INTEGER PRIMARY KEY table with a
// CHECK constraint, a STRICT table with a composite key, a STRICT table
// whose key is ANY) and a plain table.
//
// Input: up to 32 operations, each [op] [fields...]:
//   single-row INSERT (9 named columns, the 7 visible ones, or 10 with tag),
//   multi-row INSERT (2-4 rows in one statement), BEGIN, COMMIT, ROLLBACK,
//   SAVEPOINT, ROLLBACK TO / RELEASE, a local INSERT/UPDATE/DELETE, or
//   switching the merge-equal-values setting.
// Every value may have any storage class: table names, packed pks (valid,
// non-canonical, wrong arity or garbage), cids, versions, site ids (this
// site's, two others, NULL, junk), cl, seq and tag are drawn from small
// pools so that changes hit the same rows.
//
// Invariants:
//  * no crash (ASan/UBSan);
//  * a merge puts clocks only on the rows SQLite itself stores for the
//    changes' keys (each key inserted into a table with the same key
//    columns and read back): a peer's pk names the same row everywhere;
//  * a statement that fails leaves every table and crsql_changes exactly as
//    before it, and neither opens nor closes the transaction; ROLLBACK and
//    ROLLBACK TO restore exactly the state at BEGIN / SAVEPOINT;
//  * at the end: PRAGMA integrity_check is ok; every user row has clock
//    metadata and every row whose causal length is odd exists (even: does
//    not), with one causal length per row; every pk shown is canonical (the
//    row's identity: PackKey) and has the table's arity; every site id
//    shown is in crsql_site_id;
//    crsql_db_version() covers every db_version shown;
//  * a fresh connection on the same bytes sees the same tables and
//    crsql_changes (no state lives only in the engine's caches);
//  * replaying only the statements that succeeded, on a fresh copy, succeeds
//    at each step and ends in the same rows, changes (db_version and seq
//    aside: failed statements may consume versions) and tracked peers.
#include <cmath>
#include <map>
#include <set>

#include "engine/packed.h"
#include "tests/fuzz/fuzz_util.h"

namespace crsync::fuzz {
namespace {

const std::string kLocal = Site('\x4c');
const std::string kS1 = Site('\x31');
const std::string kS2 = Site('\x32');

constexpr char kSchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER DEFAULT 7, c REAL, d,"
    " n INTEGER CHECK (n IS NULL OR n >= 0));"
    "SELECT crsql_as_crr('t');"
    "CREATE TABLE u (k1 TEXT NOT NULL, k2 INTEGER NOT NULL, v ANY, w TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (k1, k2)) STRICT;"
    "SELECT crsql_as_crr('u');"
    "CREATE TABLE s (k ANY NOT NULL PRIMARY KEY, v ANY) STRICT;"
    "SELECT crsql_as_crr('s');"
    "CREATE TABLE plain (id PRIMARY KEY, v);"
    "INSERT INTO t (id, a, b, n) VALUES (1, 'one', 1, 1), (2, 'two', 2, NULL), (3, 'x', 3, 3);"
    "INSERT INTO u VALUES ('a', 1, 1.5, 'x'), ('b', 2, X'00', '');"
    "DELETE FROM t WHERE id = 2;"
    "UPDATE u SET v = 'y' WHERE k1 = 'a';"
    "INSERT INTO s VALUES ('1', 1.5), (2, 'x');"
    "INSERT INTO plain VALUES (1, 1);";

std::vector<uint8_t>* g_image;
sqlite3* g_keys;  // tables with the CRRs' key columns, to see what SQLite stores

enum Op { kInsert1, kInsert2, kInsert3, kInsertMany, kBegin, kCommit, kRollback, kSavepoint,
          kSavepointEnd, kLocalWrite, kOps };

// ---- values ------------------------------------------------------------

Value PkValue(ByteReader& in) {
  static const char* const kTexts[] = {"a", "b", "1", " 2 "};
  static const double kReals[] = {1.0, 2.5, -0.0, 1e300};
  switch (in.Pick(8)) {
    case 4: return Value::Text(kTexts[in.Pick(4)]);
    case 5: return Value::Real(kReals[in.Pick(4)]);
    case 6: return Value::Blob("\x01");
    case 7: return AnyValue(in);
    default: return Value::Int(in.Pick(4));
  }
}

// A packed value with its integer widened to 8 bytes: accepted by the
// decoder, not the canonical form.
void PackWide(const std::vector<Value>& vals, std::string* out) {
  out->push_back(static_cast<char>(vals.size()));
  for (const Value& v : vals) {
    if (v.type != SQLITE_INTEGER) {
      PackOne(v, out);
      continue;
    }
    out->push_back(static_cast<char>((8 << 3) | 1));
    for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(static_cast<uint64_t>(v.i) >> (8 * i)));
  }
}

Value Pk(ByteReader& in, size_t arity) {
  std::vector<Value> vals;
  std::string packed;
  unsigned mode = in.Pick(8);
  switch (mode) {
    case 5:
      for (unsigned n = in.Pick(4); n > 0; --n) vals.push_back(PkValue(in));
      PackValues(vals, &packed);
      return Value::Blob(packed);
    case 6:
      return Value::Blob(in.Str(12));
    case 7:
      return AnyValue(in);
    default:
      for (size_t i = 0; i < arity; ++i) vals.push_back(PkValue(in));
      if (mode == 4) {
        PackWide(vals, &packed);
      } else {
        PackValues(vals, &packed);
      }
      return Value::Blob(packed);
  }
}

Value SmallIntOrAny(ByteReader& in) {
  unsigned k = in.Pick(8);
  if (k < 6) return Value::Int(in.Pick(4));
  if (k == 6) return Value::Int(Num(in));
  return AnyValue(in);
}

// The nine (or seven, or ten) values of one crsql_changes row.
std::vector<Value> Row(ByteReader& in, size_t columns) {
  static const char* const kTables[] = {"plain", "nope", "T", "crsql_site_id", ""};
  static const char* const kCids[] = {"-1", "a", "b", "c", "d", "n", "id", "k1", "k2",
                                      "v", "w", "A", "k", ""};
  std::vector<Value> row;
  size_t arity = 1;
  unsigned t = in.Pick(8);
  if (t < 3) {
    row.push_back(Value::Text("t"));
  } else if (t < 5) {
    row.push_back(Value::Text("u"));
    arity = 2;
  } else if (t == 5) {
    row.push_back(Value::Text("s"));
  } else if (t == 6) {
    row.push_back(Value::Text(kTables[in.Pick(5)]));
  } else {
    row.push_back(AnyValue(in));
  }
  row.push_back(Pk(in, arity));
  unsigned c = in.Pick(16);
  row.push_back(c < 14 ? Value::Text(kCids[c]) : c == 14 ? Value::Text(in.Str(8)) : AnyValue(in));
  row.push_back(AnyValue(in));    // val
  row.push_back(SmallIntOrAny(in));  // col_version
  row.push_back(SmallIntOrAny(in));  // db_version
  switch (in.Pick(8)) {              // site_id
    case 0: row.push_back(Value::Null()); break;
    case 1: row.push_back(Value::Blob(kLocal)); break;
    case 2: case 3: row.push_back(Value::Blob(kS1)); break;
    case 4: case 5: row.push_back(Value::Blob(kS2)); break;
    case 6: row.push_back(Value::Blob(in.Str(20))); break;
    default: row.push_back(AnyValue(in));
  }
  if (columns < 9) return row;
  unsigned k = in.Pick(8);  // cl
  row.push_back(k == 0 ? Value::Null() : k < 6 ? Value::Int(in.Pick(6)) : k == 6 ? Value::Int(Num(in)) : AnyValue(in));
  k = in.Pick(4);  // seq
  row.push_back(k == 0 ? Value::Null() : k < 3 ? Value::Int(in.Pick(8)) : AnyValue(in));
  if (columns < 10) return row;
  k = in.Pick(4);  // tag
  row.push_back(k == 0 ? Value::Null() : k == 1 ? Value::Int(static_cast<int64_t>(in.Pick(3)) - 1)
                : k == 2 ? Value::Int(Num(in)) : AnyValue(in));
  return row;
}

std::string InsertSql(size_t columns, size_t rows) {
  std::string sql = "INSERT INTO crsql_changes ";
  if (columns == 9) sql += "(\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq) ";
  if (columns == 10) sql += "(\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, tag) ";
  sql += "VALUES ";
  for (size_t r = 0; r < rows; ++r) {
    sql += r ? ", (" : "(";
    for (size_t c = 0; c < columns; ++c) sql += c ? ", ?" : "?";
    sql += ")";
  }
  return sql;
}

// ---- which row a change names -------------------------------------------

constexpr char kKeySchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL);"
    "CREATE TABLE u (k1 TEXT NOT NULL, k2 INTEGER NOT NULL, PRIMARY KEY (k1, k2)) STRICT;"
    "CREATE TABLE s (k ANY NOT NULL PRIMARY KEY) STRICT;";

using Key = std::pair<std::string, std::string>;  // table, packed pk

// A row's identity as the engine keys its clocks (PackKey, sql-api.md):
// the packed key values, except that in s's untyped key column an integral
// REAL packs as the INTEGER SQLite holds equal to it.
std::string Identity(const std::string& table, const std::vector<Value>& vals) {
  static const std::vector<char> kT = {'i'}, kU = {'t', 'i'}, kS = {'b'};
  std::string out;
  PackKey(vals, table == "t" ? kT : table == "u" ? kU : kS, &out);
  return out;
}

// The packed key of the row SQLite itself stores for a change to `table`
// with packed pk `pk` (the pk values inserted into a table with the same
// key columns and read back), or false if there is none to expect.
bool StoredKey(const Value& table, const Value& pk, Key* out) {
  if (table.type != SQLITE_TEXT || pk.type != SQLITE_BLOB) return false;
  if (table.bytes != "t" && table.bytes != "u" && table.bytes != "s") return false;
  std::vector<Value> vals;
  if (!UnpackValues(pk.bytes, &vals).ok() || vals.size() != (table.bytes == "u" ? 2u : 1u)) {
    return false;
  }
  for (const Value& v : vals) {
    if (v.type == SQLITE_NULL) return false;
  }
  StmtPtr st;
  FUZZ_CHECK_OK(Prepare(g_keys, "INSERT INTO " + table.bytes + " VALUES (?1" +
                                    (vals.size() == 2 ? ", ?2)" : ")"), &st));
  for (size_t i = 0; i < vals.size(); ++i) vals[i].Bind(st.get(), static_cast<int>(i + 1));
  if (!StepToEnd(g_keys, st.get()).ok()) return false;  // SQLite refuses it: so must the merge
  FUZZ_CHECK_OK(Prepare(g_keys, "SELECT * FROM " + table.bytes, &st));
  std::vector<Value> stored;
  FUZZ_CHECK(sqlite3_step(st.get()) == SQLITE_ROW, "key row vanished");
  for (int i = 0; i < sqlite3_column_count(st.get()); ++i) stored.push_back(Value::FromColumn(st.get(), i));
  st.reset();
  FUZZ_CHECK_OK(Exec(g_keys, "DELETE FROM " + table.bytes));
  out->first = table.bytes;
  out->second = Identity(table.bytes, stored);
  return true;
}

std::set<Key> ChangedRows(sqlite3* db) {
  std::set<Key> keys;
  StmtPtr st;
  FUZZ_CHECK_OK(Prepare(db, "SELECT DISTINCT \"table\", pk FROM crsql_changes", &st));
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    keys.emplace(Value::FromColumn(st.get(), 0).bytes, Value::FromColumn(st.get(), 1).bytes);
  }
  return keys;
}

// ---- running statements ------------------------------------------------

struct Step {
  std::string sql;
  std::vector<Value> params;
  Status status;
};

Status Run(sqlite3* db, const std::string& sql, const std::vector<Value>& params) {
  StmtPtr st;
  CRSYNC_RETURN_IF_ERROR(Prepare(db, sql, &st));
  int n = sqlite3_bind_parameter_count(st.get());
  for (size_t i = 0; i < params.size() && static_cast<int>(i) < n; ++i) {
    params[i].Bind(st.get(), static_cast<int>(i + 1));
  }
  return StepToEnd(db, st.get());
}

std::string Describe(const Step& s) {
  std::string out = s.sql + " [";
  for (const Value& v : s.params) out += v.ToSql() + ", ";
  return out + "] -> " + s.status.ToString();
}

class Session {
 public:
  explicit Session(sqlite3* db) : db_(db), dump_(db) {}

  // Runs one statement and checks that a failure changed nothing.
  Status Do(const std::string& sql, std::vector<Value> params = {}) {
    std::string before = dump_();
    bool was_auto = sqlite3_get_autocommit(db_);
    Status s = Run(db_, sql, params);
    log_.push_back(Step{sql, std::move(params), s});
    if (Verbose()) std::fprintf(stderr, "%s\n", Describe(log_.back()).c_str());
    if (!s.ok()) {
      FUZZ_CHECK(sqlite3_get_autocommit(db_) == was_auto,
                 "a failed statement opened or closed the transaction: " + Describe(log_.back()));
      std::string after = dump_();
      FUZZ_CHECK(after == before, "a failed statement changed the database: " +
                                      Describe(log_.back()) + "\nbefore:\n" + before + "\nafter:\n" +
                                      after);
    }
    if (sqlite3_get_autocommit(db_)) savepoints_.clear();
    return s;
  }

  // Runs INSERT INTO crsql_changes of `rows` rows of `columns` values, and
  // checks that the merge put clocks only on the rows SQLite stores for the
  // changes' keys (a peer's pk must name the same row here as there).
  void Merge(size_t columns, size_t rows, std::vector<Value> params) {
    std::set<Key> allowed;
    bool checkable = true;
    for (size_t r = 0; r < rows; ++r) {
      Key k;
      if (StoredKey(params[r * columns], params[r * columns + 1], &k)) {
        allowed.insert(k);
      } else {
        checkable = false;
      }
    }
    std::set<Key> before = checkable ? ChangedRows(db_) : std::set<Key>();
    std::vector<Value> row(params.begin(), params.begin() + static_cast<ptrdiff_t>(columns));
    if (!Do(InsertSql(columns, rows), std::move(params)).ok() || !checkable) return;
    for (const Key& k : ChangedRows(db_)) {
      FUZZ_CHECK(before.count(k) || allowed.count(k),
                 "the merge keyed a change to row " + Hex(k.second) + " of " + k.first +
                     ", not to the row SQLite stores for the change's pk");
    }
    // A column change to a row without clocks wins (unless its causal
    // length says deleted): its clock must name the change's origin.
    const Key& key = *allowed.begin();
    const Value &cid = row[2], &site = row[6];
    const Value cl = columns >= 9 ? row[7] : Value::Null();
    if (rows != 1 || before.count(key) || cid.type != SQLITE_TEXT || cid.bytes == "-1" ||
        (cl.type == SQLITE_INTEGER && cl.i % 2 == 0)) {
      return;
    }
    StmtPtr st;
    FUZZ_CHECK_OK(Prepare(db_, "SELECT site_id FROM crsql_changes WHERE \"table\" = ?1 AND pk = ?2 "
                               "AND cid = ?3", &st));
    Value::Text(key.first).Bind(st.get(), 1);
    Value::Blob(key.second).Bind(st.get(), 2);
    cid.Bind(st.get(), 3);
    FUZZ_CHECK(sqlite3_step(st.get()) == SQLITE_ROW, "a winning change left no clock");
    // (A NaN is bound as NULL.)
    bool null_site = site.type == SQLITE_NULL || (site.type == SQLITE_FLOAT && std::isnan(site.d));
    std::string origin = null_site ? kLocal : site.bytes;
    FUZZ_CHECK(Value::FromColumn(st.get(), 0).bytes == origin,
               "a change from " + Hex(origin) + " is attributed to " +
                   Hex(Value::FromColumn(st.get(), 0).bytes));
  }

  void Begin() {
    if (!sqlite3_get_autocommit(db_)) return;
    at_begin_ = dump_();
    FUZZ_CHECK_OK(Do("BEGIN"));
  }
  void Commit() {
    if (sqlite3_get_autocommit(db_)) return;
    if (!Do("COMMIT").ok()) Rollback();
  }
  void Rollback() {
    if (sqlite3_get_autocommit(db_)) return;
    FUZZ_CHECK_OK(Do("ROLLBACK"));
    FUZZ_CHECK(dump_() == at_begin_, "ROLLBACK did not restore the state at BEGIN");
  }
  void Savepoint() {
    if (savepoints_.size() >= 4) return;
    std::string now = dump_();
    if (sqlite3_get_autocommit(db_)) at_begin_ = now;
    std::string name = "sp" + std::to_string(savepoints_.size());
    FUZZ_CHECK_OK(Do("SAVEPOINT " + name));
    savepoints_.emplace_back(name, now);
  }
  void EndSavepoint(ByteReader& in) {
    if (savepoints_.empty()) return;
    size_t k = in.Pick(static_cast<unsigned>(savepoints_.size()));
    std::string name = savepoints_[k].first;
    if (in.Bool()) {
      std::string want = savepoints_[k].second;
      FUZZ_CHECK_OK(Do("ROLLBACK TO " + name));
      savepoints_.resize(k + 1);
      FUZZ_CHECK(dump_() == want, "ROLLBACK TO did not restore the state at SAVEPOINT");
    } else {
      savepoints_.resize(k);
      FUZZ_CHECK_OK(Do("RELEASE " + name));  // may commit, which may fail
    }
  }

  const std::vector<Step>& log() const { return log_; }
  std::string Dump() { return dump_(); }

 private:
  sqlite3* db_;
  Dumper dump_;
  std::string at_begin_;
  std::vector<std::pair<std::string, std::string>> savepoints_;  // name, state
  std::vector<Step> log_;
};

void LocalWrite(Session& s, ByteReader& in) {
  static const char* const kSql[] = {
      "INSERT OR REPLACE INTO t (id, a, n) VALUES (?1, ?3, ?2)",
      "UPDATE t SET a = ?3, n = ?2 WHERE id = ?1",
      "DELETE FROM t WHERE id = ?1",
      "UPDATE t SET id = ?2 WHERE id = ?1",
      "INSERT INTO u (k1, k2, v) VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET v = excluded.v",
      "DELETE FROM u WHERE k1 = ?1 AND k2 = ?2",
      "INSERT OR REPLACE INTO s (k, v) VALUES (?1, ?3)",
      "SELECT crsql_config_set('merge-equal-values', ?2 IS NOT 0)",
  };
  unsigned k = in.Pick(8);
  std::vector<Value> params;
  params.push_back(PkValue(in));
  params.push_back(PkValue(in));
  params.push_back(AnyValue(in));
  s.Do(kSql[k], std::move(params)).IgnoreError();
}

// ---- end-of-run invariants ---------------------------------------------

void CheckMetadata(sqlite3* db) {
  FUZZ_CHECK(One(db, "PRAGMA integrity_check") == "T" + Hex("ok"), "integrity_check");
  std::set<std::string> sites;
  StmtPtr st;
  FUZZ_CHECK_OK(Prepare(db, "SELECT site_id FROM crsql_site_id", &st));
  while (sqlite3_step(st.get()) == SQLITE_ROW) sites.insert(Value::FromColumn(st.get(), 0).bytes);

  // (table, pk) -> the causal lengths its records show.
  std::map<std::pair<std::string, std::string>, std::set<int64_t>> rows;
  int64_t max_dbv = 0;
  FUZZ_CHECK_OK(Prepare(db, "SELECT \"table\", pk, cl, site_id, db_version FROM crsql_changes", &st));
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    Value table = Value::FromColumn(st.get(), 0), pk = Value::FromColumn(st.get(), 1);
    Value site = Value::FromColumn(st.get(), 3);
    FUZZ_CHECK(table.type == SQLITE_TEXT && pk.type == SQLITE_BLOB, "table or pk of the wrong type");
    FUZZ_CHECK(sites.count(site.bytes), "crsql_changes shows a site id that crsql_site_id lacks: " +
                                            Render(site));
    rows[{table.bytes, pk.bytes}].insert(sqlite3_column_int64(st.get(), 2));
    max_dbv = std::max<int64_t>(max_dbv, sqlite3_column_int64(st.get(), 4));
  }
  FUZZ_CHECK(rc == SQLITE_DONE, std::string("reading crsql_changes: ") + sqlite3_errmsg(db));
  FUZZ_CHECK(std::stoll(One(db, "SELECT crsql_db_version()").substr(1)) >= max_dbv,
             "crsql_db_version() is behind the changes");

  for (auto [table, key] : {std::pair<std::string, const char*>{"t", "id"}, {"u", "k1, k2"}, {"s", "k"}}) {
    std::set<std::string> present;  // packed keys of the user rows
    FUZZ_CHECK_OK(Prepare(db, "SELECT " + std::string(key) + " FROM " + table, &st));
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      std::vector<Value> vals;
      for (int i = 0; i < sqlite3_column_count(st.get()); ++i) {
        vals.push_back(Value::FromColumn(st.get(), i));
      }
      present.insert(Identity(table, vals));
    }
    for (const std::string& pk : present) {
      FUZZ_CHECK(rows.count({table, pk}), "a row of " + table + " has no clock metadata: " + Hex(pk));
    }
    for (auto it = rows.lower_bound({table, ""}); it != rows.end() && it->first.first == table; ++it) {
      const std::string& pk = it->first.second;
      FUZZ_CHECK(it->second.size() == 1, "a row of " + table + " shows two causal lengths: " + Hex(pk));
      bool alive = *it->second.begin() % 2 == 1;
      FUZZ_CHECK(alive == (present.count(pk) == 1),
                 "row " + Hex(pk) + " of " + table + " has causal length " +
                     std::to_string(*it->second.begin()) + " but is " +
                     (present.count(pk) ? "present" : "absent"));
      std::vector<Value> vals;
      FUZZ_CHECK_OK(UnpackValues(pk, &vals));
      FUZZ_CHECK(vals.size() == (table == "u" ? 2u : 1u), "pk arity for " + table + ": " + Hex(pk));
      FUZZ_CHECK(Identity(table, vals) == pk, "a non-canonical pk is stored: " + Hex(pk));
    }
  }
  for (const auto& [key, cls] : rows) {
    FUZZ_CHECK(key.first == "t" || key.first == "u" || key.first == "s",
               "changes for a table that is not a CRR: " + key.first);
  }
}

// What replaying the successful statements must reproduce.
std::string Observable(sqlite3* db) {
  return Dump(db, "SELECT * FROM t") + "--\n" + Dump(db, "SELECT * FROM u") + "--\n" +
         Dump(db, "SELECT * FROM s") + "--\n" + Dump(db, "SELECT * FROM plain") + "--\n" +
         Dump(db, "SELECT \"table\", pk, cid, val, col_version, site_id, cl FROM crsql_changes "
                  "ORDER BY 1, 2, 3") +
         "--\n" + Dump(db, "SELECT * FROM crsql_site_id") + "--\n" +
         Dump(db, "SELECT site_id, version, tag, event FROM crsql_tracked_peers ORDER BY 1, 3, 4");
}

// ---- seed corpus -------------------------------------------------------

struct W {
  ByteWriter w;
  // Table 0 't', 3 'u'; pk values as PkValue picks (0..3 = that integer).
  W& Insert(unsigned op, unsigned form, unsigned table, std::vector<unsigned> pk_ints, unsigned cid,
            const Value& val, unsigned col_version, unsigned db_version, unsigned site,
            unsigned cl = 0, unsigned seq = 0) {
    if (op != kInsertMany) w.Byte(op).Byte(form);
    w.Byte(table).Byte(0);
    for (unsigned v : pk_ints) w.Byte(0).Byte(v);
    w.Byte(cid);
    WValue(w, val);
    Small(col_version);
    Small(db_version);
    w.Byte(site);
    if (form == 2) return *this;  // 7 columns
    w.Byte(cl ? 1 : 0);
    if (cl) w.Byte(cl);
    w.Byte(seq ? 1 : 0);
    if (seq) w.Byte(seq);
    if (form == 3) w.Byte(0);  // tag NULL
    return *this;
  }
  void Small(int64_t v) {  // as SmallIntOrAny reads it
    if (v < 4) {
      w.Byte(0).Byte(static_cast<unsigned>(v));
    } else {
      w.Byte(6);
      WNum(w, v);
    }
  }
  W& Op(unsigned op) {
    w.Byte(op);
    return *this;
  }
};

bool WriteSeeds(const std::string& dir) {
  bool ok = true;
  {
    W s;  // a remote column change for a new row, then its sentinel
    s.Insert(kInsert1, 0, 0, {0}, 1, Value::Text("remote"), 1, 1, 2, 1, 1);
    s.Insert(kInsert1, 0, 0, {0}, 0, Value::Null(), 1, 1, 2, 1, 2);
    ok &= WriteFile(dir, "remote_insert", s.w.str());
  }
  {
    W s;  // a remote delete (even cl) and a resurrection, in one transaction
    s.Op(kBegin);
    s.Insert(kInsert1, 0, 0, {1}, 0, Value::Null(), 2, 2, 4, 2, 0);
    s.Insert(kInsert1, 0, 0, {1}, 5, Value::Int(9), 3, 3, 4, 3, 1);
    s.Op(kCommit);
    ok &= WriteFile(dir, "delete_resurrect_txn", s.w.str());
  }
  {
    W s;  // a CHECK violation in the second row of a multi-row statement
    s.w.Byte(kInsertMany).Byte(0).Byte(0);  // 9 columns, 2 rows
    s.Insert(kInsertMany, 0, 0, {0}, 1, Value::Text("ok"), 1, 1, 2, 1, 0);
    s.Insert(kInsertMany, 0, 0, {0}, 5, Value::Int(-1), 1, 1, 2, 1, 1);
    ok &= WriteFile(dir, "multirow_check_violation", s.w.str());
  }
  {
    W s;  // composite key, 7-column form, local writes, savepoints
    s.Op(kSavepoint);
    s.Insert(kInsert1, 2, 3, {0, 1}, 9, Value::Real(2.5), 1, 1, 4);
    s.Op(kSavepointEnd).w.Byte(0).Byte(1);  // ROLLBACK TO sp0
    s.Insert(kInsert1, 3, 3, {1, 2}, 10, Value::Text("w"), 1, 1, 2, 1, 0);
    s.Op(kLocalWrite).w.Byte(0).Byte(0).Byte(1).Byte(0).Byte(1).Byte(3).Str("local");
    s.Op(kSavepointEnd).w.Byte(0).Byte(0);  // RELEASE sp0
    ok &= WriteFile(dir, "savepoints_composite", s.w.str());
  }
  {
    W s;  // a new site in a statement that fails, then the same site again
    s.w.Byte(kInsertMany).Byte(0).Byte(0);
    s.Insert(kInsertMany, 0, 0, {0}, 1, Value::Text("s2"), 1, 7, 4, 1, 0);
    s.Insert(kInsertMany, 0, 0, {0}, 6, Value::Int(1), 1, 7, 4, 1, 1);  // cid id: a pk column
    s.Insert(kInsert1, 0, 0, {1}, 2, Value::Int(5), 2, 8, 4, 1, 0);
    ok &= WriteFile(dir, "failed_new_site", s.w.str());
  }
  {
    W s;  // local writes only: insert, pk change, delete
    s.Op(kLocalWrite).w.Byte(0).Byte(0).Byte(2).Byte(0).Byte(1).Byte(3).Str("z");
    s.Op(kLocalWrite).w.Byte(3).Byte(0).Byte(2).Byte(0).Byte(0).Byte(0);
    s.Op(kLocalWrite).w.Byte(2).Byte(0).Byte(1).Byte(0).Byte(0).Byte(0);
    ok &= WriteFile(dir, "local_writes", s.w.str());
  }
  return ok;
}

}  // namespace
}  // namespace crsync::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace crsync::fuzz;
  MaybeWriteSeeds(WriteSeeds);
  crsync::DbPtr db = NewDb(kLocal, kSchema);
  g_image = new std::vector<uint8_t>(Serialize(db.get()));
  static crsync::DbPtr keys;
  FUZZ_CHECK_OK(crsync::OpenDb(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr, &keys));
  FUZZ_CHECK_OK(crsync::Exec(keys.get(), kKeySchema));
  g_keys = keys.get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crsync;
  using namespace crsync::fuzz;
  static const size_t kForms[] = {9, 9, 7, 10};
  ByteReader in(data, size);
  DbPtr db = OpenImage(*g_image);
  Session s(db.get());
  for (int i = 0; i < 32 && !in.empty(); ++i) {
    switch (in.Pick(kOps)) {
      case kInsert1:
      case kInsert2:
      case kInsert3: {
        size_t columns = kForms[in.Pick(4)];
        s.Merge(columns, 1, Row(in, columns));
        break;
      }
      case kInsertMany: {
        size_t columns = kForms[in.Pick(4)];
        size_t rows = 2 + in.Pick(3);
        std::vector<Value> params;
        for (size_t r = 0; r < rows; ++r) {
          std::vector<Value> row = Row(in, columns);
          params.insert(params.end(), row.begin(), row.end());
        }
        s.Merge(columns, rows, std::move(params));
        break;
      }
      case kBegin: s.Begin(); break;
      case kCommit: s.Commit(); break;
      case kRollback: s.Rollback(); break;
      case kSavepoint: s.Savepoint(); break;
      case kSavepointEnd: s.EndSavepoint(in); break;
      default: LocalWrite(s, in);
    }
  }
  s.Commit();
  FUZZ_CHECK(sqlite3_get_autocommit(db.get()), "a transaction is still open");
  CheckMetadata(db.get());

  // A fresh connection reads the same state from the bytes alone.
  std::vector<uint8_t> image = Serialize(db.get());
  std::string live = s.Dump();
  int64_t live_version = std::stoll(One(db.get(), "SELECT crsql_db_version()").substr(1));
  {
    DbPtr fresh = OpenImage(image);
    std::string reread = DumpAll(fresh.get());
    FUZZ_CHECK(reread == live, "a fresh connection sees another state:\nlive:\n" + live +
                                   "\nfresh:\n" + reread);
    int64_t fresh_version = std::stoll(One(fresh.get(), "SELECT crsql_db_version()").substr(1));
    FUZZ_CHECK(fresh_version == live_version,
               "crsql_db_version() is " + std::to_string(live_version) + " here, " +
                   std::to_string(fresh_version) + " on a fresh connection");
  }

  // Failed statements had no effect: the successful ones alone end the same.
  bool any_failed = false;
  for (const Step& step : s.log()) any_failed |= !step.status.ok();
  if (!any_failed) return 0;
  DbPtr replay = OpenImage(*g_image);
  for (const Step& step : s.log()) {
    if (!step.status.ok()) continue;
    Status r = Run(replay.get(), step.sql, step.params);
    FUZZ_CHECK(r.ok(), "replaying the successful statements, one fails: " + Describe(step) +
                           "\nnow: " + r.ToString());
  }
  std::string want = Observable(db.get()), got = Observable(replay.get());
  FUZZ_CHECK(got == want, "failed statements left a trace: with them\n" + want +
                              "\nwithout them\n" + got);
  return 0;
}
