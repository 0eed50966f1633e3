// Python pickle reader and writer for plain data (see wico/data/pickle.h).
//
// The reader is a stack machine like Python's own unpickler, but it never recurses while parsing
// and checks every length against the bytes that remain, so hostile input costs at most memory
// proportional to its size. Containers are shared nodes (the memo makes them DAGs; a crafted
// stream can even make cycles); the reader keeps every container it creates, and when it is done
// it checks the result for cycles and depth, then empties the containers the result does not hold,
// so no cycle leaks and no long chain is destroyed recursively.
#include "wico/data/pickle.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <unordered_map>

#include "wico/core/error.h"

namespace wico::data {

namespace {

// Deeper nesting than Python itself can pickle (its recursion limit is about 1000); bounding it
// keeps every recursive walk over a PyValue (repr, ==, the writer, destruction) within the stack.
constexpr std::size_t kMaxNesting = 1000;
// Dicts with more entries than this get a hash index for key look-ups.
constexpr std::size_t kIndexThreshold = 16;
// A dict key's identity (see key_identity) longer than this is refused; it bounds the work a
// crafted stream can ask for with keys that are huge shared tuples.
constexpr std::size_t kMaxKeyIdentity = 1 << 16;

// The parse-time role of a list node: sets load as lists, but only a set takes ADDITEMS and only
// a plain list takes APPEND, as in Python.
enum class ListRole : std::uint8_t { kPlain, kSet, kFrozen };

}  // namespace

struct PyValue::Node {
  std::string text;  // str (UTF-8) or bytes
  List items;        // list or tuple
  Dict entries;      // dict
  // Key identity -> position in `entries`, built once a dict passes kIndexThreshold entries.
  std::unique_ptr<std::unordered_map<std::string, std::size_t>> index;
  // Used only while reading.
  ListRole role = ListRole::kPlain;
  std::uint8_t visit = 0;   // 0 new, 1 on the walk's path, 2 done
  std::uint32_t height = 0;  // nesting below and including this node
};

namespace {

using Node = PyValue::Node;
using Kind = PyValue::Kind;

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes the code points of UTF-8 text (surrogates allowed, as Python's 'surrogatepass' does).
// Returns false on malformed input.
template <typename Fn>
bool for_each_code_point(std::string_view text, Fn fn) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::uint32_t cp;
    std::size_t extra;
    if (c < 0x80) {
      cp = c;
      extra = 0;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      extra = 2;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      extra = 3;
    } else {
      return false;
    }
    if (i + extra >= text.size() && extra > 0) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms and values beyond Unicode are malformed.
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF) return false;
    fn(cp);
    i += extra + 1;
  }
  return true;
}

bool is_valid_utf8(std::string_view text) {
  return for_each_code_point(text, [](std::uint32_t) {});
}

// A printable, bounded rendering of untrusted text for error messages.
std::string quote_for_message(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < 80; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (text.size() > 80) out += "...";
  return out;
}

// ---- dict keys ----------------------------------------------------------------------------------

enum class KeyStatus { kOk, kUnhashable, kTooLarge };

// A string equal for keys Python considers equal (True == 1 == 1.0, and so on), so that a dict
// keeps one entry per key. Tuples are walked with a size budget rather than recursion limits
// alone: a crafted stream can share one tuple many times inside another.
KeyStatus key_identity(const PyValue& key, std::string& out, std::size_t depth) {
  if (out.size() > kMaxKeyIdentity || depth > kMaxNesting) return KeyStatus::kTooLarge;
  auto put_int = [&out](std::int64_t v) {
    out += 'i';
    char raw[8];
    std::memcpy(raw, &v, 8);
    out.append(raw, 8);
  };
  switch (key.kind()) {
    case Kind::kNone:
      out += 'n';
      return KeyStatus::kOk;
    case Kind::kBool:
      put_int(key.as_bool() ? 1 : 0);
      return KeyStatus::kOk;
    case Kind::kInt:
      put_int(key.as_int());
      return KeyStatus::kOk;
    case Kind::kFloat: {
      const double f = key.as_float();
      if (std::isfinite(f) && f == std::trunc(f) && f >= -9223372036854775808.0 &&
          f < 9223372036854775808.0) {
        put_int(static_cast<std::int64_t>(f));
      } else {
        out += 'f';
        char raw[8];
        std::memcpy(raw, &f, 8);
        out.append(raw, 8);
      }
      return KeyStatus::kOk;
    }
    case Kind::kStr:
    case Kind::kBytes: {
      const std::string& text = key.is_str() ? key.as_str() : key.as_bytes();
      out += key.is_str() ? 's' : 'b';
      out += std::to_string(text.size());
      out += ':';
      out += text;
      return out.size() > kMaxKeyIdentity ? KeyStatus::kTooLarge : KeyStatus::kOk;
    }
    case Kind::kTuple: {
      out += 't';
      out += std::to_string(key.size());
      out += ':';
      for (const PyValue& item : key.as_tuple()) {
        const KeyStatus status = key_identity(item, out, depth + 1);
        if (status != KeyStatus::kOk) return status;
      }
      return KeyStatus::kOk;
    }
    default:
      return KeyStatus::kUnhashable;
  }
}

// Inserts or replaces `key` in a dict node. Returns nullptr or what is wrong with the key.
const char* dict_set(Node& node, PyValue key, PyValue value) {
  auto& entries = node.entries;
  if (!node.index) {
    if (key.is_str()) {
      // The common case (refer's dicts have a handful of str keys): no identity strings needed.
      for (auto& entry : entries) {
        if (entry.first.is_str() && entry.first.as_str() == key.as_str()) {
          entry.second = std::move(value);
          return nullptr;
        }
      }
    } else {
      std::string id;
      const KeyStatus status = key_identity(key, id, 0);
      if (status == KeyStatus::kUnhashable) return "unhashable dict key";
      if (status == KeyStatus::kTooLarge) return "dict key too large or too deep";
      for (auto& entry : entries) {
        if (entry.first.is_str() || entry.first.kind() != key.kind()) {
          // Only numbers of different kinds can be equal across kinds.
          const bool numeric = !entry.first.is_str() && !entry.first.is_bytes() &&
                               !entry.first.is_tuple() && !entry.first.is_none() &&
                               !key.is_bytes() && !key.is_tuple() && !key.is_none();
          if (!numeric) continue;
        }
        std::string other;
        if (key_identity(entry.first, other, 0) == KeyStatus::kOk && other == id) {
          entry.second = std::move(value);
          return nullptr;
        }
      }
    }
    entries.emplace_back(std::move(key), std::move(value));
    if (entries.size() > kIndexThreshold) {
      auto index = std::make_unique<std::unordered_map<std::string, std::size_t>>();
      for (std::size_t i = 0; i < entries.size(); ++i) {
        std::string id;
        key_identity(entries[i].first, id, 0);  // every key here already passed
        index->emplace(std::move(id), i);
      }
      node.index = std::move(index);
    }
    return nullptr;
  }
  std::string id;
  const KeyStatus status = key_identity(key, id, 0);
  if (status == KeyStatus::kUnhashable) return "unhashable dict key";
  if (status == KeyStatus::kTooLarge) return "dict key too large or too deep";
  auto [it, inserted] = node.index->emplace(std::move(id), entries.size());
  if (inserted) {
    entries.emplace_back(std::move(key), std::move(value));
  } else {
    entries[it->second].second = std::move(value);
  }
  return nullptr;
}

// ---- repr ---------------------------------------------------------------------------------------

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), f);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

void repr_text(std::string& out, const std::string& text, bool is_bytes) {
  if (is_bytes) out += 'b';
  out += '\'';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\'': out += "\\'"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F || (is_bytes && c >= 0x80)) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '\'';
}

// Appends the repr of `v`, stopping once `out` passes `limit` (shared DAGs can be exponentially
// larger than their pickle, so the walk must stop early, not just the output).
void repr_into(std::string& out, const PyValue& v, std::size_t limit) {
  if (out.size() > limit) return;
  switch (v.kind()) {
    case Kind::kNone: out += "None"; return;
    case Kind::kBool: out += v.as_bool() ? "True" : "False"; return;
    case Kind::kInt: out += std::to_string(v.as_int()); return;
    case Kind::kFloat: out += float_repr(v.as_float()); return;
    case Kind::kStr: repr_text(out, v.as_str(), false); return;
    case Kind::kBytes: repr_text(out, v.as_bytes(), true); return;
    case Kind::kList:
    case Kind::kTuple: {
      out += v.is_list() ? '[' : '(';
      const auto& items = v.items();
      for (std::size_t i = 0; i < items.size() && out.size() <= limit; ++i) {
        if (i > 0) out += ", ";
        repr_into(out, items[i], limit);
      }
      if (v.is_tuple() && items.size() == 1) out += ',';
      out += v.is_list() ? ']' : ')';
      return;
    }
    case Kind::kDict: {
      out += '{';
      const auto& entries = v.as_dict();
      for (std::size_t i = 0; i < entries.size() && out.size() <= limit; ++i) {
        if (i > 0) out += ", ";
        repr_into(out, entries[i].first, limit);
        out += ": ";
        repr_into(out, entries[i].second, limit);
      }
      out += '}';
      return;
    }
    case Kind::kGlobal: out += v.class_name(); return;
    case Kind::kObject:
      out += v.class_name();
      repr_into(out, v.object_args(), limit);
      if (!v.object_state().is_none()) {
        out += ".__setstate__(";
        repr_into(out, v.object_state(), limit);
        out += ')';
      }
      return;
    case Kind::kPersistentId:
      out += "persistent_id(";
      repr_into(out, v.persistent_id(), limit);
      out += ')';
      return;
  }
}

bool values_equal(const PyValue& a, const PyValue& b);

bool dicts_equal(const PyValue::Dict& a, const PyValue::Dict& b, const PyValue& b_value) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    // Same order is the usual case; otherwise look the key up.
    if (values_equal(a[i].first, b[i].first)) {
      if (!values_equal(a[i].second, b[i].second)) return false;
      continue;
    }
    const PyValue* other = b_value.find(a[i].first);
    if (other == nullptr || !values_equal(a[i].second, *other)) return false;
  }
  return true;
}

}  // namespace

// ---- PyValue ------------------------------------------------------------------------------------

PyValue PyValue::boolean(bool value) {
  PyValue v;
  v.kind_ = Kind::kBool;
  v.scalar_.b = value;
  return v;
}

PyValue PyValue::integer(std::int64_t value) {
  PyValue v;
  v.kind_ = Kind::kInt;
  v.scalar_.i = value;
  return v;
}

PyValue PyValue::real(double value) {
  PyValue v;
  v.kind_ = Kind::kFloat;
  v.scalar_.f = value;
  return v;
}

PyValue PyValue::string(std::string utf8) {
  PyValue v;
  v.kind_ = Kind::kStr;
  v.node_ = std::make_shared<Node>();
  v.node_->text = std::move(utf8);
  return v;
}

PyValue PyValue::bytes(std::string data) {
  PyValue v = string(std::move(data));
  v.kind_ = Kind::kBytes;
  return v;
}

PyValue PyValue::list(List items) {
  PyValue v;
  v.kind_ = Kind::kList;
  v.node_ = std::make_shared<Node>();
  v.node_->items = std::move(items);
  return v;
}

PyValue PyValue::tuple(List items) {
  PyValue v = list(std::move(items));
  v.kind_ = Kind::kTuple;
  return v;
}

PyValue PyValue::dict(Dict entries) {
  PyValue v;
  v.kind_ = Kind::kDict;
  v.node_ = std::make_shared<Node>();
  v.node_->entries.reserve(entries.size());
  for (auto& entry : entries) {
    if (const char* problem = dict_set(*v.node_, std::move(entry.first), std::move(entry.second))) {
      throw Error(detail::concat("PyValue::dict: ", problem));
    }
  }
  return v;
}

PyValue PyValue::global(std::string qualified_name) {
  PyValue v;
  v.kind_ = Kind::kGlobal;
  v.node_ = std::make_shared<Node>();
  v.node_->text = std::move(qualified_name);
  return v;
}

PyValue PyValue::object(std::string class_name, PyValue args, PyValue state) {
  if (!args.is_tuple()) throw Error("PyValue::object: the arguments must be a tuple");
  PyValue v;
  v.kind_ = Kind::kObject;
  v.node_ = std::make_shared<Node>();
  v.node_->text = std::move(class_name);
  v.node_->items = {std::move(args), std::move(state)};
  return v;
}

PyValue PyValue::persistent(PyValue id) {
  PyValue v;
  v.kind_ = Kind::kPersistentId;
  v.node_ = std::make_shared<Node>();
  v.node_->items = {std::move(id)};
  return v;
}

const char* PyValue::kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kStr: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "global";
    case Kind::kObject: return "object";
    case Kind::kPersistentId: return "persistent id";
  }
  return "?";
}

namespace {
[[noreturn]] void wrong_kind(const PyValue& v, const char* expected) {
  throw Error(detail::concat("expected a Python ", expected, ", got ", v.kind_name(), " ",
                             v.repr(80)));
}
}  // namespace

bool PyValue::as_bool() const {
  if (kind_ != Kind::kBool) wrong_kind(*this, "bool");
  return scalar_.b;
}

std::int64_t PyValue::as_int() const {
  if (kind_ != Kind::kInt) wrong_kind(*this, "int");
  return scalar_.i;
}

double PyValue::as_float() const {
  if (kind_ == Kind::kInt) return static_cast<double>(scalar_.i);
  if (kind_ != Kind::kFloat) wrong_kind(*this, "float");
  return scalar_.f;
}

const std::string& PyValue::as_str() const {
  if (kind_ != Kind::kStr) wrong_kind(*this, "str");
  return node_->text;
}

const std::string& PyValue::as_bytes() const {
  if (kind_ != Kind::kBytes) wrong_kind(*this, "bytes");
  return node_->text;
}

const PyValue::List& PyValue::as_list() const {
  if (kind_ != Kind::kList) wrong_kind(*this, "list");
  return node_->items;
}

const PyValue::List& PyValue::as_tuple() const {
  if (kind_ != Kind::kTuple) wrong_kind(*this, "tuple");
  return node_->items;
}

const PyValue::List& PyValue::items() const {
  if (kind_ != Kind::kList && kind_ != Kind::kTuple) wrong_kind(*this, "list or tuple");
  return node_->items;
}

const PyValue::Dict& PyValue::as_dict() const {
  if (kind_ != Kind::kDict) wrong_kind(*this, "dict");
  return node_->entries;
}

const std::string& PyValue::class_name() const {
  if (kind_ != Kind::kGlobal && kind_ != Kind::kObject) wrong_kind(*this, "global or object");
  return node_->text;
}

const PyValue& PyValue::object_args() const {
  if (kind_ != Kind::kObject) wrong_kind(*this, "object");
  return node_->items[0];
}

const PyValue& PyValue::object_state() const {
  if (kind_ != Kind::kObject) wrong_kind(*this, "object");
  return node_->items[1];
}

const PyValue& PyValue::persistent_id() const {
  if (kind_ != Kind::kPersistentId) wrong_kind(*this, "persistent id");
  return node_->items[0];
}

std::size_t PyValue::size() const {
  switch (kind_) {
    case Kind::kStr:
    case Kind::kBytes: return node_->text.size();
    case Kind::kList:
    case Kind::kTuple: return node_->items.size();
    case Kind::kDict: return node_->entries.size();
    default: wrong_kind(*this, "str, bytes, list, tuple or dict");
  }
}

const PyValue& PyValue::operator[](std::size_t index) const {
  const List& list = items();
  if (index >= list.size()) {
    throw Error(detail::concat("index ", index, " out of range for a ", kind_name(), " of ",
                               list.size(), " elements"));
  }
  return list[index];
}

const PyValue* PyValue::find(const std::string& key) const {
  if (kind_ != Kind::kDict) return nullptr;
  if (!node_->index) {
    for (const auto& entry : node_->entries) {
      if (entry.first.is_str() && entry.first.node_->text == key) return &entry.second;
    }
    return nullptr;
  }
  return find(PyValue::string(key));
}

const PyValue* PyValue::find(const PyValue& key) const {
  if (kind_ != Kind::kDict) return nullptr;
  std::string id;
  if (key_identity(key, id, 0) != KeyStatus::kOk) return nullptr;
  if (node_->index) {
    const auto it = node_->index->find(id);
    return it == node_->index->end() ? nullptr : &node_->entries[it->second].second;
  }
  for (const auto& entry : node_->entries) {
    std::string other;
    if (key_identity(entry.first, other, 0) == KeyStatus::kOk && other == id) {
      return &entry.second;
    }
  }
  return nullptr;
}

const PyValue& PyValue::at(const std::string& key) const {
  const Dict& entries = as_dict();
  if (const PyValue* value = find(key)) return *value;
  std::string keys;
  for (std::size_t i = 0; i < entries.size() && keys.size() < 300; ++i) {
    if (i > 0) keys += ", ";
    repr_into(keys, entries[i].first, 300);
  }
  if (keys.size() > 300) keys += "...";
  throw Error(detail::concat("dict has no key '", key, "' (keys: ", keys, ")"));
}

std::string PyValue::repr(std::size_t max_chars) const {
  std::string out;
  repr_into(out, *this, max_chars);
  if (out.size() > max_chars) {
    out.resize(max_chars);
    out += "...";
  }
  return out;
}

namespace {
bool values_equal(const PyValue& a, const PyValue& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kNone: return true;
    case Kind::kBool: return a.as_bool() == b.as_bool();
    case Kind::kInt: return a.as_int() == b.as_int();
    case Kind::kFloat: {
      const double x = a.as_float(), y = b.as_float();
      return x == y ? std::signbit(x) == std::signbit(y) : (std::isnan(x) && std::isnan(y));
    }
    case Kind::kStr: return a.as_str() == b.as_str();
    case Kind::kBytes: return a.as_bytes() == b.as_bytes();
    case Kind::kList:
    case Kind::kTuple: {
      const auto& x = a.items();
      const auto& y = b.items();
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!values_equal(x[i], y[i])) return false;
      }
      return true;
    }
    case Kind::kDict:
      if (&a.as_dict() == &b.as_dict()) return true;
      return dicts_equal(a.as_dict(), b.as_dict(), b);
    case Kind::kGlobal: return a.class_name() == b.class_name();
    case Kind::kObject:
      return a.class_name() == b.class_name() && values_equal(a.object_args(), b.object_args()) &&
             values_equal(a.object_state(), b.object_state());
    case Kind::kPersistentId: return values_equal(a.persistent_id(), b.persistent_id());
  }
  return false;
}
}  // namespace

bool operator==(const PyValue& a, const PyValue& b) { return values_equal(a, b); }

// ---- reader -------------------------------------------------------------------------------------

namespace {

// Callables a stream may name with GLOBAL / STACK_GLOBAL; nothing else is ever resolved.
enum class Callable : std::uint8_t {
  kNone,
  kOrderedDict,
  kCodecsEncode,
  kSet,
  kFrozenSet,
  kBytes,
  kBytearray
};

struct Item {
  PyValue value;
  Callable callable = Callable::kNone;
};

enum Opcode : unsigned char {
  kMark = '(', kStop = '.', kPop = '0', kPopMark = '1', kDup = '2', kFloat = 'F', kInt = 'I',
  kBinInt = 'J', kBinInt1 = 'K', kLong = 'L', kBinInt2 = 'M', kNone = 'N', kPersId = 'P',
  kBinPersId = 'Q', kReduce = 'R', kString = 'S', kBinString = 'T', kShortBinString = 'U',
  kUnicode = 'V', kBinUnicode = 'X', kAppend = 'a', kBuild = 'b', kGlobal = 'c', kDict = 'd',
  kEmptyDict = '}', kAppends = 'e', kGet = 'g', kBinGet = 'h', kInst = 'i', kLongBinGet = 'j',
  kList = 'l', kEmptyList = ']', kObj = 'o', kPut = 'p', kBinPut = 'q', kLongBinPut = 'r',
  kSetItem = 's', kTuple = 't', kEmptyTuple = ')', kSetItems = 'u', kBinFloat = 'G',
  kProto = 0x80, kNewObj = 0x81, kExt1 = 0x82, kExt2 = 0x83, kExt4 = 0x84, kTuple1 = 0x85,
  kTuple2 = 0x86, kTuple3 = 0x87, kNewTrue = 0x88, kNewFalse = 0x89, kLong1 = 0x8a,
  kLong4 = 0x8b, kBinBytes = 'B', kShortBinBytes = 'C', kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d, kBinBytes8 = 0x8e, kEmptySet = 0x8f, kAddItems = 0x90, kFrozenSet = 0x91,
  kNewObjEx = 0x92, kStackGlobal = 0x93, kMemoize = 0x94, kFrame = 0x95, kByteArray8 = 0x96,
  kNextBuffer = 0x97, kReadonlyBuffer = 0x98
};

}  // namespace

bool is_weight_file_global(std::string_view module, std::string_view name) {
  const auto starts = [](std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
  };
  const auto ends = [](std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
  };
  const bool builtins = module == "__builtin__" || module == "builtins";
  if (builtins) {
    return name == "set" || name == "frozenset" || name == "bytes" || name == "bytearray" ||
           name == "slice" || name == "complex";
  }
  if (module == "collections") return name == "OrderedDict" || name == "Counter";
  if (module == "_codecs") return name == "encode";
  if (module == "argparse") return name == "Namespace";  // LAVT's and CRIS's saved arguments
  // torch.save: tensor and parameter rebuilding, storage classes, sizes, devices, dtypes.
  if (module == "torch._utils") return starts(name, "_rebuild_");
  if (module == "torch._tensor") return name == "_rebuild_from_type_v2";
  if (module == "torch.storage") return name == "_load_from_bytes";
  if (module == "torch.nn.parameter") return name == "Parameter";
  if (module == "torch.serialization") return name == "_get_layout";
  if (module == "torch.jit._pickle") return true;  // TorchScript's list and tensor builders
  if (module == "torch" || module == "torch.cuda") {
    static const std::set<std::string_view> kTorch = {
        "Size",    "device",  "Tensor",   "float16", "float32", "float64",    "bfloat16",
        "half",    "float",   "double",   "int8",    "int16",   "int32",      "int64",
        "uint8",   "bool",    "long",     "int",     "short",   "complex64",  "complex128",
        "strided", "contiguous_format", "channels_last"};
    return ends(name, "Storage") || kTorch.count(name) > 0;
  }
  // TorchScript archives name their own classes; their code is never run here.
  if (starts(module, "__torch__")) return true;
  // numpy arrays and scalars (detectron2's .pkl, arrays inside checkpoints).
  for (const std::string_view root : {"numpy.core.", "numpy._core."}) {
    if (starts(module, root)) {
      const std::string_view rest = module.substr(root.size());
      return (rest == "multiarray" && (name == "_reconstruct" || name == "scalar")) ||
             (rest == "numeric" && name == "_frombuffer");
    }
  }
  if (module == "numpy") return name == "ndarray" || name == "dtype";
  if (module == "numpy.dtypes") return true;  // numpy 2's dtype classes
  return false;
}

class PickleReader {
 public:
  PickleReader(std::string_view data, const std::string& source, const PickleOptions& options)
      : data_(data), source_(source), options_(options) {}

  ~PickleReader() {
    // Break every reference between the containers the result does not hold: cycles built by a
    // crafted stream would leak, and long chains would be destroyed recursively.
    for (const auto& node : containers_) {
      if (node->visit != 2 || !succeeded_) {
        PyValue::List().swap(node->items);
        PyValue::Dict().swap(node->entries);
        node->index.reset();
      }
    }
  }

  PyValue parse() {
    while (true) {
      if (pos_ >= data_.size()) fail("truncated pickle: no STOP opcode");
      op_start_ = pos_;
      const auto op = static_cast<unsigned char>(data_[pos_++]);
      if (op == kStop) break;
      step(op);
    }
    Item result = pop_item();
    if (result.callable != Callable::kNone) fail("unsupported construct: a bare global as the result");
    for (const auto& [name, offset] : unvetted_) {
      // A class outside the allow-list is accepted only as the class of a torch.nn.Module that
      // torch.save(model) stored: instantiated without running its code and given a module's
      // state (its _parameters), as MAttNet's checkpoints hold their model.
      if (module_classes_.count(name) == 0) fail_global(name, offset);
    }
    validate(result.value);
    succeeded_ = true;
    return std::move(result.value);
  }
  std::size_t consumed() const { return pos_; }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(detail::concat(message, " at byte offset ", op_start_, " in ", source_));
  }
  [[noreturn]] void fail_global(const std::string& name, std::size_t offset) const {
    throw Error(detail::concat(
        "global '", quote_for_message(name), "' at byte offset ", offset, " in ", source_,
        " is not allowed in a weight file: only torch's tensor, storage and parameter rebuilding, "
        "numpy arrays, OrderedDict, _codecs.encode, argparse.Namespace and torch.nn.Module "
        "classes restored from their state are (nothing in a pickle is ever executed)"));
  }

  // ---- input ----
  void need(std::size_t n) const {
    if (data_.size() - pos_ < n) {
      fail(detail::concat("truncated pickle: opcode needs ", n, " more bytes, ",
                          data_.size() - pos_, " left"));
    }
  }
  std::string_view take(std::size_t n) {
    need(n);
    const std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint64_t read_le(std::size_t n) {
    const std::string_view raw = take(n);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(raw[i])) << (8 * i);
    }
    return v;
  }
  // A length prefix, checked against the bytes left before anything is allocated.
  std::size_t read_length(std::size_t width) {
    const std::uint64_t n = read_le(width);
    if (n > data_.size() - pos_) {
      fail(detail::concat("truncated pickle: length ", n, " exceeds the ", data_.size() - pos_,
                          " bytes left"));
    }
    return static_cast<std::size_t>(n);
  }
  std::string_view read_line() {
    const std::size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated pickle: missing end of line");
    const std::string_view line = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }

  // ---- stack ----
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(PyValue v) { stack_.push_back(Item{std::move(v), Callable::kNone}); }
  Item pop_item() {
    if (stack_.size() <= floor()) fail("stack underflow (corrupt pickle)");
    Item item = std::move(stack_.back());
    stack_.pop_back();
    return item;
  }
  PyValue pop_value() {
    Item item = pop_item();
    if (item.callable != Callable::kNone) fail("unsupported construct: a global used as a value");
    return std::move(item.value);
  }
  Item& top() {
    if (stack_.size() <= floor()) fail("stack underflow (corrupt pickle)");
    return stack_.back();
  }
  // The items above the last MARK, which is removed.
  std::vector<Item> pop_mark() {
    if (marks_.empty()) fail("MARK expected on the stack (corrupt pickle)");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Item> items(std::make_move_iterator(stack_.begin() + mark),
                            std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  PyValue::List pop_mark_values() {
    std::vector<Item> items = pop_mark();
    PyValue::List values;
    values.reserve(items.size());
    for (auto& item : items) {
      if (item.callable != Callable::kNone) fail("unsupported construct: a global used as a value");
      values.push_back(std::move(item.value));
    }
    return values;
  }

  // ---- values ----
  PyValue make_container(Kind kind) {
    PyValue v;
    v.kind_ = kind;
    v.node_ = std::make_shared<Node>();
    containers_.push_back(v.node_);
    return v;
  }
  PyValue make_list(PyValue::List items, ListRole role = ListRole::kPlain) {
    PyValue v = make_container(Kind::kList);
    v.node_->items = std::move(items);
    v.node_->role = role;
    return v;
  }
  PyValue make_tuple(PyValue::List items) {
    PyValue v = make_container(Kind::kTuple);
    v.node_->items = std::move(items);
    return v;
  }
  // An inert object: class name, arguments and (until BUILD) no state.
  PyValue make_object(const std::string& class_name, PyValue args) {
    PyValue v = make_container(Kind::kObject);
    v.node_->text = class_name;
    v.node_->items = {std::move(args), PyValue()};
    return v;
  }
  PyValue make_global(std::string_view module, std::string_view name) {
    PyValue v = make_container(Kind::kGlobal);
    v.node_->text = detail::concat(module, ".", name);
    return v;
  }
  void require_objects(const char* construct) const {
    if (!options_.objects) fail(detail::concat("unsupported construct: ", construct));
  }
  static PyValue make_text(std::string_view text, Kind kind) {
    PyValue v = PyValue::string(std::string(text));
    v.kind_ = kind;
    return v;
  }
  void set_item(PyValue& dict, PyValue key, PyValue value) {
    if (!dict.is_dict()) fail(detail::concat("SETITEM on a ", dict.kind_name(), ", not a dict"));
    if (const char* problem = dict_set(*dict.node_, std::move(key), std::move(value))) {
      fail(problem);
    }
  }
  Node& mutable_list(const Item& item, ListRole role, const char* opcode) {
    if (item.callable != Callable::kNone || !item.value.is_list() ||
        item.value.node_->role != role) {
      fail(detail::concat(opcode, " on a ",
                          item.callable != Callable::kNone ? "global" : item.value.kind_name(),
                          role == ListRole::kSet ? ", not a set" : ", not a list"));
    }
    return *item.value.node_;
  }

  std::int64_t parse_decimal(std::string_view text, const char* what) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
      text.remove_suffix(1);
    }
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc::result_out_of_range) {
      fail(detail::concat("Python int ", quote_for_message(text), " does not fit in 64 bits"));
    }
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
      fail(detail::concat("malformed ", what, " '", quote_for_message(text), "'"));
    }
    return v;
  }

  // Little-endian two's complement of LONG1 / LONG4.
  std::int64_t decode_long(std::string_view raw) {
    if (raw.empty()) return 0;
    const bool negative = (static_cast<unsigned char>(raw.back()) & 0x80) != 0;
    // Bytes beyond the eighth must only repeat the sign.
    for (std::size_t i = 8; i < raw.size(); ++i) {
      if (static_cast<unsigned char>(raw[i]) != (negative ? 0xFF : 0x00)) {
        fail("Python int does not fit in 64 bits");
      }
    }
    std::uint64_t v = negative ? ~std::uint64_t{0} : 0;
    const std::size_t n = std::min<std::size_t>(raw.size(), 8);
    for (std::size_t i = 0; i < n; ++i) {
      v &= ~(std::uint64_t{0xFF} << (8 * i));
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(raw[i])) << (8 * i);
    }
    if (raw.size() > 8 && ((v >> 63) != 0) != negative) fail("Python int does not fit in 64 bits");
    std::int64_t out;
    std::memcpy(&out, &v, 8);
    return out;
  }

  double parse_float_text(std::string_view text) {
    while (!text.empty() && (text.back() == ' ' || text.back() == '\r')) text.remove_suffix(1);
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    // Out of range still means a well-formed literal (Python gives inf or 0 there too).
    if (text.empty() || (ec != std::errc() && ec != std::errc::result_out_of_range) ||
        end != text.data() + text.size()) {
      fail(detail::concat("malformed FLOAT '", quote_for_message(text), "'"));
    }
    return v;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Protocol 0 STRING: a quoted Python 2 literal with backslash escapes; kept as raw bytes.
  std::string decode_string_literal(std::string_view line) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    if (line.size() < 2 || (line.front() != '\'' && line.front() != '"') ||
        line.back() != line.front()) {
      fail("STRING opcode argument is not a quoted string");
    }
    const std::string_view body = line.substr(1, line.size() - 2);
    std::string out;
    out.reserve(body.size());
    for (std::size_t i = 0; i < body.size(); ++i) {
      if (body[i] != '\\' || i + 1 == body.size()) {
        out += body[i];
        continue;
      }
      const char c = body[++i];
      switch (c) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': {
          const int hi = i + 1 < body.size() ? hex_value(body[i + 1]) : -1;
          const int lo = i + 2 < body.size() ? hex_value(body[i + 2]) : -1;
          if (hi < 0 || lo < 0) fail("invalid \\x escape in STRING");
          out += static_cast<char>(hi * 16 + lo);
          i += 2;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            int v = c - '0';
            for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' &&
                            body[i + 1] <= '7';
                 ++k) {
              v = v * 8 + (body[++i] - '0');
            }
            out += static_cast<char>(v & 0xFF);
          } else {
            out += '\\';
            out += c;
          }
      }
    }
    return out;
  }

  // Protocol 0 UNICODE: raw-unicode-escape (\uXXXX and \UXXXXXXXX; other bytes are Latin-1).
  std::string decode_raw_unicode_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::uint32_t pending_high = 0;  // a high surrogate waiting for its low half
    auto emit = [&](std::uint32_t cp) {
      if (pending_high != 0) {
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          append_utf8(out, 0x10000 + ((pending_high - 0xD800) << 10) + (cp - 0xDC00));
          pending_high = 0;
          return;
        }
        append_utf8(out, pending_high);
        pending_high = 0;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        pending_high = cp;
      } else {
        append_utf8(out, cp);
      }
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c == '\\' && i + 1 < text.size() && (text[i + 1] == 'u' || text[i + 1] == 'U')) {
        const std::size_t digits = text[i + 1] == 'u' ? 4 : 8;
        if (i + 2 + digits > text.size()) fail("truncated \\u escape in UNICODE");
        std::uint32_t cp = 0;
        for (std::size_t k = 0; k < digits; ++k) {
          const int h = hex_value(text[i + 2 + k]);
          if (h < 0) fail("invalid \\u escape in UNICODE");
          cp = cp * 16 + static_cast<std::uint32_t>(h);
        }
        if (cp > 0x10FFFF) fail("\\U escape beyond Unicode in UNICODE");
        emit(cp);
        i += 1 + digits;
      } else {
        emit(c);
      }
    }
    if (pending_high != 0) append_utf8(out, pending_high);
    return out;
  }

  // ---- memo ----
  void memo_put(std::uint64_t index) {
    const Item& item = top();
    if (index < memo_.size()) {
      if (!memo_present_[index]) ++memo_count_;
      memo_[index] = item;
      memo_present_[index] = true;
    } else if (index < memo_.size() + (1u << 16)) {
      memo_.resize(index + 1);
      memo_present_.resize(index + 1, false);
      memo_[index] = item;
      memo_present_[index] = true;
      ++memo_count_;
    } else {
      // Sparse indices (legal, but never written by Python) go to a map, not a huge vector.
      if (sparse_memo_.insert_or_assign(index, item).second) ++memo_count_;
    }
  }
  void memo_get(std::uint64_t index) {
    if (index < memo_.size() && memo_present_[index]) {
      stack_.push_back(memo_[index]);
      return;
    }
    const auto it = sparse_memo_.find(index);
    if (it == sparse_memo_.end()) fail(detail::concat("memo key ", index, " not found"));
    stack_.push_back(it->second);
  }

  // ---- globals ----
  Callable resolve_global(std::string_view module, std::string_view name) {
    const bool builtins = module == "__builtin__" || module == "builtins";
    if (module == "collections" && name == "OrderedDict") return Callable::kOrderedDict;
    if (module == "_codecs" && name == "encode") return Callable::kCodecsEncode;
    if (builtins && name == "set") return Callable::kSet;
    if (builtins && name == "frozenset") return Callable::kFrozenSet;
    if (builtins && name == "bytes") return Callable::kBytes;
    if (builtins && name == "bytearray") return Callable::kBytearray;
    if (options_.objects) return Callable::kNone;  // an inert global, made by push_global
    fail(detail::concat("unsupported construct: global '", quote_for_message(module), ".",
                        quote_for_message(name), "'"));
  }
  void push_global(std::string_view module, std::string_view name) {
    const Callable callable = resolve_global(module, name);
    if (callable != Callable::kNone) {
      stack_.push_back(Item{PyValue(), callable});
    } else {
      if (!is_weight_file_global(module, name)) {
        unvetted_.emplace(detail::concat(module, ".", name), op_start_);
      }
      push(make_global(module, name));
    }
  }
  // Calls run code in Python: a call of a global outside the allow-list is refused at once.
  void check_callable(const std::string& name) const {
    const auto it = unvetted_.find(name);
    if (it != unvetted_.end()) fail_global(name, it->second);
  }

  std::string latin1_encode(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    bool in_range = true;
    const bool ok = for_each_code_point(text, [&](std::uint32_t cp) {
      in_range = in_range && cp <= 0xFF;
      out += static_cast<char>(cp & 0xFF);
    });
    if (!ok || !in_range) fail("_codecs.encode: text is not Latin-1");
    return out;
  }

  PyValue call(Callable callable, const PyValue& args) {
    if (!args.is_tuple()) fail("unsupported construct: call arguments are not a tuple");
    const auto& a = args.as_tuple();
    switch (callable) {
      case Callable::kOrderedDict: {
        PyValue dict = make_container(Kind::kDict);
        if (a.empty()) return dict;
        if (a.size() == 1 && a[0].is_dict()) {
          for (const auto& entry : a[0].as_dict()) set_item(dict, entry.first, entry.second);
          return dict;
        }
        if (a.size() == 1 && (a[0].is_list() || a[0].is_tuple())) {
          // Python 2's OrderedDict pickles its items as a list of [key, value] lists.
          for (const PyValue& pair : a[0].items()) {
            if (!(pair.is_list() || pair.is_tuple()) || pair.size() != 2) {
              fail("OrderedDict item is not a (key, value) pair");
            }
            set_item(dict, pair[0], pair[1]);
          }
          return dict;
        }
        fail("unsupported construct: OrderedDict arguments");
      }
      case Callable::kCodecsEncode: {
        if (a.empty() || a.size() > 2 || !a[0].is_str() || (a.size() == 2 && !a[1].is_str())) {
          fail("unsupported construct: _codecs.encode arguments");
        }
        const std::string encoding = a.size() == 2 ? a[1].as_str() : "utf-8";
        if (encoding == "latin1" || encoding == "latin-1" || encoding == "iso-8859-1") {
          return make_text(latin1_encode(a[0].as_str()), Kind::kBytes);
        }
        if (encoding == "utf-8" || encoding == "utf8") return make_text(a[0].as_str(), Kind::kBytes);
        fail(detail::concat("unsupported construct: _codecs.encode with encoding '",
                            quote_for_message(encoding), "'"));
      }
      case Callable::kSet:
      case Callable::kFrozenSet: {
        const ListRole role = callable == Callable::kSet ? ListRole::kSet : ListRole::kFrozen;
        if (a.empty()) return make_list({}, role);
        if (a.size() == 1 && (a[0].is_list() || a[0].is_tuple())) {
          return make_list(a[0].items(), role);
        }
        fail("unsupported construct: set arguments");
      }
      case Callable::kBytes:
      case Callable::kBytearray: {
        if (a.empty()) return make_text("", Kind::kBytes);
        if (a.size() == 1 && a[0].is_bytes()) return a[0];
        if (a.size() == 2 && a[0].is_str() && a[1].is_str() &&
            (a[1].as_str() == "latin1" || a[1].as_str() == "latin-1")) {
          return make_text(latin1_encode(a[0].as_str()), Kind::kBytes);
        }
        fail("unsupported construct: bytes arguments");
      }
      case Callable::kNone: break;
    }
    fail("unsupported construct: call of a value that is not a global");
  }

  // ---- one opcode ----
  void step(unsigned char op) {
    switch (op) {
      case kProto: {
        const auto version = static_cast<unsigned char>(take(1)[0]);
        if (version > 5) fail(detail::concat("unsupported pickle protocol ", int(version)));
        return;
      }
      case kFrame:
        read_length(8);  // frames only group opcodes; the content is read as usual
        return;
      case kMark: marks_.push_back(stack_.size()); return;
      case kPop:
        if (stack_.size() > floor()) {
          stack_.pop_back();
        } else {
          pop_mark();
        }
        return;
      case kPopMark: pop_mark(); return;
      case kDup: stack_.push_back(top()); return;

      case kNone: push(PyValue()); return;
      case kNewTrue: push(PyValue::boolean(true)); return;
      case kNewFalse: push(PyValue::boolean(false)); return;
      case kInt: {
        const std::string_view line = read_line();
        if (line == "01") return push(PyValue::boolean(true));
        if (line == "00") return push(PyValue::boolean(false));
        return push(PyValue::integer(parse_decimal(line, "INT")));
      }
      case kLong: {
        std::string_view line = read_line();
        if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
        return push(PyValue::integer(parse_decimal(line, "LONG")));
      }
      case kBinInt: {
        const auto raw = static_cast<std::uint32_t>(read_le(4));
        std::int32_t v;
        std::memcpy(&v, &raw, 4);
        return push(PyValue::integer(v));
      }
      case kBinInt1: return push(PyValue::integer(static_cast<std::int64_t>(read_le(1))));
      case kBinInt2: return push(PyValue::integer(static_cast<std::int64_t>(read_le(2))));
      case kLong1: return push(PyValue::integer(decode_long(take(read_length(1)))));
      case kLong4: {
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4)));
        if (n < 0) fail("LONG4 with a negative length");
        pos_ -= 4;  // re-read as a checked length
        return push(PyValue::integer(decode_long(take(read_length(4)))));
      }
      case kFloat: return push(PyValue::real(parse_float_text(read_line())));
      case kBinFloat: {
        const std::string_view raw = take(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(raw[i]);
        double v;
        std::memcpy(&v, &bits, 8);
        return push(PyValue::real(v));
      }

      case kString: return push(make_text(decode_string_literal(read_line()), Kind::kStr));
      case kBinString: {
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4)));
        if (n < 0) fail("BINSTRING with a negative length");
        pos_ -= 4;
        return push(make_text(take(read_length(4)), Kind::kStr));
      }
      case kShortBinString: return push(make_text(take(read_length(1)), Kind::kStr));
      case kUnicode:
        return push(make_text(decode_raw_unicode_escape(read_line()), Kind::kStr));
      case kShortBinUnicode: return push(make_text(take(read_length(1)), Kind::kStr));
      case kBinUnicode: return push(make_text(take(read_length(4)), Kind::kStr));
      case kBinUnicode8: return push(make_text(take(read_length(8)), Kind::kStr));
      case kShortBinBytes: return push(make_text(take(read_length(1)), Kind::kBytes));
      case kBinBytes: return push(make_text(take(read_length(4)), Kind::kBytes));
      case kBinBytes8:
      case kByteArray8: return push(make_text(take(read_length(8)), Kind::kBytes));

      case kEmptyList: return push(make_list({}));
      case kEmptyTuple: return push(make_tuple({}));
      case kEmptyDict: return push(make_container(Kind::kDict));
      case kEmptySet: return push(make_list({}, ListRole::kSet));
      case kList: return push(make_list(pop_mark_values()));
      case kTuple: return push(make_tuple(pop_mark_values()));
      case kFrozenSet: return push(make_list(pop_mark_values(), ListRole::kFrozen));
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const std::size_t n = op - kTuple1 + 1;
        PyValue::List items(n);
        for (std::size_t i = n; i-- > 0;) items[i] = pop_value();
        return push(make_tuple(std::move(items)));
      }
      case kDict: {
        PyValue::List values = pop_mark_values();
        if (values.size() % 2 != 0) fail("DICT with an odd number of items");
        PyValue dict = make_container(Kind::kDict);
        for (std::size_t i = 0; i < values.size(); i += 2) {
          set_item(dict, std::move(values[i]), std::move(values[i + 1]));
        }
        return push(std::move(dict));
      }
      case kAppend: {
        PyValue value = pop_value();
        mutable_list(top(), ListRole::kPlain, "APPEND").items.push_back(std::move(value));
        return;
      }
      case kAppends:
      case kAddItems: {
        PyValue::List values = pop_mark_values();
        const ListRole role = op == kAppends ? ListRole::kPlain : ListRole::kSet;
        auto& items = mutable_list(top(), role, op == kAppends ? "APPENDS" : "ADDITEMS").items;
        items.insert(items.end(), std::make_move_iterator(values.begin()),
                     std::make_move_iterator(values.end()));
        return;
      }
      case kSetItem: {
        PyValue value = pop_value();
        PyValue key = pop_value();
        Item& target = top();
        if (target.callable != Callable::kNone) fail("SETITEM on a global");
        set_item(target.value, std::move(key), std::move(value));
        return;
      }
      case kSetItems: {
        PyValue::List values = pop_mark_values();
        if (values.size() % 2 != 0) fail("SETITEMS with an odd number of items");
        Item& target = top();
        if (target.callable != Callable::kNone) fail("SETITEMS on a global");
        for (std::size_t i = 0; i < values.size(); i += 2) {
          set_item(target.value, std::move(values[i]), std::move(values[i + 1]));
        }
        return;
      }

      case kPut: {
        const std::int64_t index = parse_decimal(read_line(), "PUT index");
        if (index < 0) fail("negative PUT index");
        return memo_put(static_cast<std::uint64_t>(index));
      }
      case kBinPut: return memo_put(read_le(1));
      case kLongBinPut: return memo_put(read_le(4));
      case kMemoize: return memo_put(memo_count_);
      case kGet: {
        const std::int64_t index = parse_decimal(read_line(), "GET index");
        if (index < 0) fail(detail::concat("memo key ", index, " not found"));
        return memo_get(static_cast<std::uint64_t>(index));
      }
      case kBinGet: return memo_get(read_le(1));
      case kLongBinGet: return memo_get(read_le(4));

      case kGlobal: {
        const std::string_view module = read_line();
        const std::string_view name = read_line();
        return push_global(module, name);
      }
      case kStackGlobal: {
        const PyValue name = pop_value();
        const PyValue module = pop_value();
        if (!name.is_str() || !module.is_str()) fail("STACK_GLOBAL needs two str");
        return push_global(module.as_str(), name.as_str());
      }
      case kReduce:
      case kNewObj: {
        PyValue args = pop_value();
        const Item callable = pop_item();
        if (callable.callable == Callable::kNone) {
          if (!callable.value.is_global()) {
            fail("unsupported construct: call of a value that is not a global");
          }
          if (!args.is_tuple()) fail("unsupported construct: call arguments are not a tuple");
          const std::string& name = callable.value.class_name();
          if (op == kReduce) check_callable(name);
          PyValue object = make_object(name, std::move(args));
          if (op == kNewObj && unvetted_.count(name)) pending_.emplace(object.identity(), name);
          return push(std::move(object));
        }
        return push(call(callable.callable, args));
      }
      case kNewObjEx: {
        require_objects("class instance");
        PyValue kwargs = pop_value();
        PyValue args = pop_value();
        const PyValue cls = pop_value();
        if (!cls.is_global() || !args.is_tuple() || !kwargs.is_dict()) {
          fail("NEWOBJ_EX needs a global, a tuple and a dict");
        }
        PyValue object = make_object(cls.class_name(), std::move(args));
        if (unvetted_.count(cls.class_name())) pending_.emplace(object.identity(), cls.class_name());
        if (kwargs.size() > 0) object.node_->items[1] = std::move(kwargs);
        return push(std::move(object));
      }
      case kObj: {
        require_objects("class instance");
        PyValue::List values = pop_mark_values();
        if (values.empty() || !values[0].is_global()) fail("OBJ needs a global class");
        const std::string name = values[0].class_name();
        check_callable(name);
        values.erase(values.begin());
        return push(make_object(name, make_tuple(std::move(values))));
      }
      case kInst: {
        require_objects("class instance");
        const std::string_view module = read_line();
        const std::string_view name = read_line();
        if (!is_weight_file_global(module, name)) {
          fail_global(detail::concat(module, ".", name), op_start_);
        }
        PyValue::List values = pop_mark_values();
        return push(make_object(detail::concat(module, ".", name), make_tuple(std::move(values))));
      }
      case kPersId:
      case kBinPersId: {
        require_objects("persistent id");
        PyValue id = op == kPersId ? make_text(read_line(), Kind::kStr) : pop_value();
        if (options_.persistent_load) {
          try {
            return push(options_.persistent_load(id));
          } catch (const Error& e) {
            fail(detail::concat("persistent id ", id.repr(120), ": ", e.what()));
          }
        }
        PyValue v = make_container(Kind::kPersistentId);
        v.node_->items = {std::move(id)};
        return push(std::move(v));
      }
      case kBuild: {
        PyValue state = pop_value();
        Item& target = top();
        if (options_.objects && target.callable == Callable::kNone) {
          if (target.value.is_object()) {
            const auto pending = pending_.find(target.value.identity());
            if (pending != pending_.end()) {
              if (state.find("_parameters") != nullptr) module_classes_.insert(pending->second);
              pending_.erase(pending);
            }
            target.value.node_->items[1] = std::move(state);
            return;
          }
          // An OrderedDict state dict carries `_metadata` (module versions) as its attribute.
          if (target.value.is_dict()) return;
        }
        // OrderedDict may carry its instance __dict__ as state; an empty one changes nothing.
        const bool empty_state = state.is_none() || (state.is_dict() && state.size() == 0) ||
                                 (state.is_tuple() && state.size() == 2 && state[0].is_none() &&
                                  state[1].is_dict() && state[1].size() == 0);
        if (target.callable != Callable::kNone || !target.value.is_dict() || !empty_state) {
          fail("unsupported construct: BUILD (object state)");
        }
        return;
      }

      case kExt1:
      case kExt2:
      case kExt4: fail("unsupported construct: extension registry code");
      case kNextBuffer:
      case kReadonlyBuffer: fail("unsupported construct: out-of-band buffer");
      default: {
        static const char kHex[] = "0123456789abcdef";
        fail(detail::concat("invalid opcode 0x", kHex[op >> 4], kHex[op & 15]));
      }
    }
  }

  static bool has_children(const PyValue& v) {
    return v.is_list() || v.is_tuple() || v.is_dict() || v.is_object() || v.is_persistent_id();
  }

  // Walks the result without recursion: refuses cycles and nesting beyond kMaxNesting, and
  // marks the containers it holds (visit == 2) so that the destructor spares them.
  void validate(const PyValue& root) {
    if (!root.node_ || !has_children(root)) return;
    struct Frame {
      Node* node;
      std::size_t next;  // next child: items, then keys and values of entries
    };
    auto child = [](Node* node, std::size_t i) -> const PyValue* {
      if (i < node->items.size()) return &node->items[i];
      i -= node->items.size();
      if (i < 2 * node->entries.size()) {
        const auto& entry = node->entries[i / 2];
        return i % 2 == 0 ? &entry.first : &entry.second;
      }
      return nullptr;
    };
    std::vector<Frame> path{{root.node_.get(), 0}};
    root.node_->visit = 1;
    while (!path.empty()) {
      Frame& frame = path.back();
      const PyValue* next = child(frame.node, frame.next++);
      if (next == nullptr) {
        frame.node->visit = 2;
        const std::uint32_t height = frame.node->height + 1;
        path.pop_back();
        if (!path.empty()) path.back().node->height = std::max(path.back().node->height, height);
        continue;
      }
      if (!has_children(*next)) continue;
      Node* node = next->node_.get();
      if (node->visit == 1) {
        fail("unsupported construct: a container that contains itself");
      }
      if (node->visit == 2) {
        if (path.size() + node->height > kMaxNesting) {
          fail(detail::concat("containers nested deeper than ", kMaxNesting));
        }
        frame.node->height = std::max(frame.node->height, node->height);
        continue;
      }
      if (path.size() >= kMaxNesting) {
        fail(detail::concat("containers nested deeper than ", kMaxNesting));
      }
      node->visit = 1;
      path.push_back({node, 0});
    }
  }

  std::string_view data_;
  const std::string& source_;
  PickleOptions options_;
  std::size_t pos_ = 0;
  std::size_t op_start_ = 0;
  bool succeeded_ = false;
  std::vector<Item> stack_;
  std::vector<std::size_t> marks_;
  std::vector<Item> memo_;
  std::vector<bool> memo_present_;
  std::unordered_map<std::uint64_t, Item> sparse_memo_;
  std::uint64_t memo_count_ = 0;
  std::vector<std::shared_ptr<Node>> containers_;
  // Globals outside the weight-file allow-list (name -> first byte offset), the objects NEWOBJ
  // made of them that still wait for their BUILD, and the classes that got a module's state.
  std::map<std::string, std::size_t> unvetted_;
  std::unordered_map<const void*, std::string> pending_;
  std::set<std::string> module_classes_;
};

PyValue parse_pickle(std::string_view bytes, const std::string& source_name,
                     const PickleOptions& options) {
  PickleReader reader(bytes, source_name, options);
  return reader.parse();
}

std::size_t parse_pickle_prefix(std::string_view bytes, const std::string& source_name,
                                const PickleOptions& options, PyValue& out) {
  PickleReader reader(bytes, source_name, options);
  out = reader.parse();
  return reader.consumed();
}

PyValue load_pickle(const std::filesystem::path& file, const PickleOptions& options) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(detail::concat("cannot open pickle file ", file.string()));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw Error(detail::concat("cannot read pickle file ", file.string()));
  return parse_pickle(content.str(), file.string(), options);
}

// ---- writer -------------------------------------------------------------------------------------

class PickleWriter {
 public:
  explicit PickleWriter(int protocol) : protocol_(protocol) {}

  std::string write(const PyValue& value) {
    out_ += static_cast<char>(kProto);
    out_ += static_cast<char>(protocol_);
    write_value(value, 0);
    out_ += static_cast<char>(kStop);
    return std::move(out_);
  }

  // The bytes write() gives PyValue::list(items), for items that share no value with each
  // other, with each item made by `next_item` and handed to `flush` as bytes once written.
  void write_list(std::size_t count, const std::function<PyValue()>& next_item,
                  const std::function<void(const std::string&)>& flush) {
    static const char kListKey = 0;
    out_ += static_cast<char>(kProto);
    out_ += static_cast<char>(protocol_);
    op(kEmptyList);
    memo_put(&kListKey);
    write_batches(count, [&](std::size_t) {
      const PyValue item = next_item();
      write_value(item, 1);
      // The item's nodes are freed after this; their addresses must not match a later node.
      forget(item);
      flush(out_);
      out_.clear();
    }, kAppend, kAppends);
    op(kStop);
    flush(out_);
    out_.clear();
  }

 private:
  void put_le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xFF);
  }
  void op(unsigned char code) { out_ += static_cast<char>(code); }

  void memo_put(const void* key) {
    const auto index = next_memo_++;
    memo_.emplace(key, index);
    if (index < 256) {
      op(kBinPut);
      put_le(index, 1);
    } else {
      op(kLongBinPut);
      put_le(index, 4);
    }
  }
  bool memo_get(const void* key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) return false;
    if (it->second < 256) {
      op(kBinGet);
      put_le(it->second, 1);
    } else {
      op(kLongBinGet);
      put_le(it->second, 4);
    }
    return true;
  }

  void write_unicode(const std::string& text) {
    if (!is_valid_utf8(text)) {
      throw Error(detail::concat("write_pickle: str is not valid UTF-8: ",
                                 PyValue::string(text).repr(80)));
    }
    if (protocol_ >= 4 && text.size() < 256) {
      op(kShortBinUnicode);
      put_le(text.size(), 1);
    } else if (text.size() <= 0xFFFFFFFFu) {
      op(kBinUnicode);
      put_le(text.size(), 4);
    } else {
      op(kBinUnicode8);
      put_le(text.size(), 8);
    }
    out_ += text;
  }

  void write_int(std::int64_t v) {
    if (v >= 0 && v < 256) {
      op(kBinInt1);
      put_le(static_cast<std::uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      op(kBinInt2);
      put_le(static_cast<std::uint64_t>(v), 2);
    } else if (v >= std::numeric_limits<std::int32_t>::min() &&
               v <= std::numeric_limits<std::int32_t>::max()) {
      op(kBinInt);
      put_le(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)), 4);
    } else {
      // Fewest two's complement bytes that keep the sign.
      std::uint64_t bits;
      std::memcpy(&bits, &v, 8);
      int n = 8;
      while (n > 1) {
        const auto top_byte = static_cast<unsigned char>(bits >> (8 * (n - 1)));
        const auto next_sign = (bits >> (8 * (n - 1) - 1)) & 1;
        if ((top_byte == 0x00 && next_sign == 0) || (top_byte == 0xFF && next_sign == 1)) {
          --n;
        } else {
          break;
        }
      }
      op(kLong1);
      put_le(static_cast<std::uint64_t>(n), 1);
      put_le(bits, n);
    }
  }

  void write_bytes(const PyValue& value) {
    const std::string& data = value.as_bytes();
    if (protocol_ >= 3) {
      if (data.size() < 256) {
        op(kShortBinBytes);
        put_le(data.size(), 1);
      } else if (data.size() <= 0xFFFFFFFFu) {
        op(kBinBytes);
        put_le(data.size(), 4);
      } else {
        op(kBinBytes8);
        put_le(data.size(), 8);
      }
      out_ += data;
      return;
    }
    // Protocol 2 has no bytes type; Python 3 writes _codecs.encode(latin-1 text, 'latin1'),
    // which Python 2 reads back as a str of the same bytes.
    if (!memo_get(&kCodecsKey)) {
      op(kGlobal);
      out_ += "_codecs\nencode\n";
      memo_put(&kCodecsKey);
    }
    std::string text;
    text.reserve(data.size());
    for (const char c : data) append_utf8(text, static_cast<unsigned char>(c));
    write_unicode(text);
    if (!memo_get(&kLatin1Key)) {
      write_unicode("latin1");
      memo_put(&kLatin1Key);
    }
    op(kTuple2);
    op(kReduce);
  }

  void write_value(const PyValue& value, std::size_t depth) {
    if (depth > kMaxNesting) {
      throw Error(detail::concat("write_pickle: containers nested deeper than ", kMaxNesting));
    }
    if (value.is_global() || value.is_object() || value.is_persistent_id()) {
      throw Error(detail::concat("write_pickle: cannot write a ", value.kind_name(), " (",
                                 value.repr(80), "): only plain data is written"));
    }
    const Node* node = value.node_.get();
    if (node != nullptr && memo_get(node)) return;
    switch (value.kind()) {
      case Kind::kGlobal:
      case Kind::kObject:
      case Kind::kPersistentId: return;  // refused above
      case Kind::kNone: op(kNone); return;
      case Kind::kBool: op(value.as_bool() ? kNewTrue : kNewFalse); return;
      case Kind::kInt: write_int(value.as_int()); return;
      case Kind::kFloat: {
        const double f = value.as_float();
        std::uint64_t bits;
        std::memcpy(&bits, &f, 8);
        op(kBinFloat);
        for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xFF);
        return;
      }
      case Kind::kStr: write_unicode(value.as_str()); break;
      case Kind::kBytes: write_bytes(value); break;
      case Kind::kTuple: {
        const auto& items = value.as_tuple();
        if (items.empty()) {
          op(kEmptyTuple);
          return;  // Python does not memoize the empty tuple either
        }
        if (items.size() > 3) op(kMark);
        for (const PyValue& item : items) write_value(item, depth + 1);
        // A tuple containing itself is impossible here (values are acyclic), so no GET check.
        op(items.size() > 3 ? static_cast<unsigned char>(kTuple)
                            : static_cast<unsigned char>(kTuple1 + items.size() - 1));
        break;
      }
      case Kind::kList: {
        op(kEmptyList);
        memo_put(node);
        const auto& items = value.as_list();
        write_batches(items.size(), [&](std::size_t i) { write_value(items[i], depth + 1); },
                      kAppend, kAppends);
        return;
      }
      case Kind::kDict: {
        op(kEmptyDict);
        memo_put(node);
        const auto& entries = value.as_dict();
        write_batches(
            entries.size(),
            [&](std::size_t i) {
              write_value(entries[i].first, depth + 1);
              write_value(entries[i].second, depth + 1);
            },
            kSetItem, kSetItems);
        return;
      }
    }
    memo_put(node);
  }

  // Python's batching: one APPEND/SETITEM for a single element, else MARK ... APPENDS/SETITEMS
  // per 1000 elements, so its unpickler never holds more than one batch above a mark.
  template <typename Fn>
  void write_batches(std::size_t n, Fn write_one, unsigned char single, unsigned char many) {
    constexpr std::size_t kBatch = 1000;
    for (std::size_t start = 0; start < n; start += kBatch) {
      const std::size_t end = std::min(n, start + kBatch);
      if (end - start == 1) {
        write_one(start);
        op(single);
        continue;
      }
      op(kMark);
      for (std::size_t i = start; i < end; ++i) write_one(i);
      op(many);
    }
  }

  void forget(const PyValue& value) {
    const Node* node = value.node_.get();
    if (node == nullptr || memo_.erase(node) == 0) return;
    if (value.is_list() || value.is_tuple()) {
      for (const PyValue& item : value.items()) forget(item);
    } else if (value.is_dict()) {
      for (const auto& [key, item] : value.as_dict()) {
        forget(key);
        forget(item);
      }
    }
  }

  static const char kCodecsKey;
  static const char kLatin1Key;
  int protocol_;
  std::string out_;
  std::unordered_map<const void*, std::uint32_t> memo_;
  std::uint32_t next_memo_ = 0;
};

const char PickleWriter::kCodecsKey = 0;
const char PickleWriter::kLatin1Key = 0;

namespace {

void check_protocol(int protocol) {
  if (protocol < 2 || protocol > 5) {
    throw Error(detail::concat("write_pickle: protocol ", protocol,
                               " not supported (2 to 5 are)"));
  }
}

}  // namespace

std::string write_pickle(const PyValue& value, int protocol) {
  check_protocol(protocol);
  return PickleWriter(protocol).write(value);
}

namespace {

// Writes what `produce` hands its sink to path + ".tmp" and renames it over `path`; on any
// failure (a full disk) the temporary file is removed and the old file kept.
void write_replacing(const std::filesystem::path& path,
                     const std::function<void(const std::function<void(const std::string&)>&)>&
                         produce) {
  const std::filesystem::path temporary = path.string() + ".tmp";
  std::error_code ignored;
  try {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(detail::concat("cannot write pickle file ", temporary.string()));
    produce([&](const std::string& bytes) {
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) {
        throw Error(detail::concat("cannot write pickle file ", temporary.string(),
                                   " (disk full?); ", path.string(), " is left as it was"));
      }
    });
    out.flush();
    out.close();
    if (!out) {
      throw Error(detail::concat("cannot write pickle file ", temporary.string(),
                                 " (disk full?); ", path.string(), " is left as it was"));
    }
  } catch (...) {
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    std::filesystem::remove(temporary, ignored);
    throw Error(detail::concat("cannot rename ", temporary.string(), " to ", path.string()));
  }
}

}  // namespace

void save_pickle(const std::filesystem::path& path, const PyValue& value, int protocol) {
  const std::string bytes = write_pickle(value, protocol);
  write_replacing(path, [&](const auto& sink) { sink(bytes); });
}

void save_pickle_list(const std::filesystem::path& path, std::size_t count,
                      const std::function<PyValue()>& next_item, int protocol) {
  check_protocol(protocol);
  write_replacing(path, [&](const auto& sink) {
    PickleWriter(protocol).write_list(count, next_item, sink);
  });
}

}  // namespace wico::data
