// A native reader and writer for Python pickles of plain data (None, bool, int, float, str, bytes,
// list, tuple, dict, set), so the refer API's `refs(*).p` files load without Python. Protocols 0
// to 5 are read; `collections.OrderedDict` loads as a dict and sets as lists. By default anything
// else (class instances, persistent ids, out-of-band buffers) is rejected with a wico::Error naming
// the byte offset, as is corrupt or truncated input.
//
// With PickleOptions::objects (for weight files: torch.save, detectron2 .pkl), globals, calls,
// instances and persistent ids become inert values instead: a global is its qualified name, a
// call or instance an object holding its class name, arguments and BUILD state, a persistent id
// its tuple. Nothing is ever executed; the caller interprets the objects it knows (wico/io/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wico::data {

// One Python value. Scalars are held inline; strings and containers are shared and immutable once
// built, so copying a PyValue (a dict out of a list of 50k) costs one reference count.
class PyValue {
 public:
  enum class Kind {
    kNone, kBool, kInt, kFloat, kStr, kBytes, kList, kTuple, kDict,
    kGlobal,       // a class or function named by GLOBAL: class_name() is "module.name"
    kObject,       // the result of calling a global (REDUCE, NEWOBJ, OBJ, INST) with its state
    kPersistentId  // BINPERSID / PERSID: persistent_id() is the id value (a tuple for torch)
  };
  using List = std::vector<PyValue>;
  using Entry = std::pair<PyValue, PyValue>;
  using Dict = std::vector<Entry>;  // insertion order, as Python dicts keep it

  PyValue() = default;  // None

  static PyValue none() { return PyValue(); }
  static PyValue boolean(bool value);
  static PyValue integer(std::int64_t value);
  static PyValue real(double value);
  static PyValue string(std::string utf8);
  static PyValue bytes(std::string data);
  static PyValue list(List items);
  static PyValue tuple(List items);
  // Keys must be hashable (None, bool, int, float, str, bytes or tuples of these); a repeated key
  // keeps its first position and its last value, as in Python.
  static PyValue dict(Dict entries);
  // The inert values of PickleOptions::objects (for persistent_load hooks and tests).
  static PyValue global(std::string qualified_name);
  static PyValue object(std::string class_name, PyValue args, PyValue state);
  static PyValue persistent(PyValue id);

  Kind kind() const { return kind_; }
  static const char* kind_name(Kind kind);
  const char* kind_name() const { return kind_name(kind_); }

  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_str() const { return kind_ == Kind::kStr; }
  bool is_bytes() const { return kind_ == Kind::kBytes; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_global() const { return kind_ == Kind::kGlobal; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_persistent_id() const { return kind_ == Kind::kPersistentId; }

  // Typed access; a wrong kind throws wico::Error naming the expected and the actual kind.
  bool as_bool() const;
  std::int64_t as_int() const;
  double as_float() const;  // an int converts too: Python code mixes 3 and 3.0 freely
  const std::string& as_str() const;
  const std::string& as_bytes() const;
  const List& as_list() const;
  const List& as_tuple() const;
  const List& items() const;  // a list or a tuple
  const Dict& as_dict() const;
  // A global's or an object's qualified class name ("torch._utils._rebuild_tensor_v2").
  const std::string& class_name() const;
  // An object's call arguments (a tuple; empty for OBJ/INST without arguments) and the state
  // BUILD gave it (None when there was no BUILD).
  const PyValue& object_args() const;
  const PyValue& object_state() const;
  const PyValue& persistent_id() const;

  // Elements of a list or tuple, entries of a dict, bytes of a str or bytes.
  std::size_t size() const;
  // The index-th element of a list or tuple (bounds checked).
  const PyValue& operator[](std::size_t index) const;
  // The value of a dict's string key; a missing key throws an Error listing the keys there are.
  const PyValue& at(const std::string& key) const;
  // nullptr when this is not a dict or the key is absent.
  const PyValue* find(const std::string& key) const;
  const PyValue* find(const PyValue& key) const;

  // The shared payload's address: equal for values that are the same Python object (memo
  // references), nullptr for scalars and None. Lets interpreters of objects cache by identity.
  const void* identity() const { return node_.get(); }

  // Python's repr, cut to about max_chars (ending in "...") for error messages and logs.
  std::string repr(std::size_t max_chars = 200) const;

  // Structural equality. Unlike Python, kinds must match (1 != 1.0 != True, list != tuple) and
  // dict order matters not; NaN equals NaN so that round trips compare equal.
  friend bool operator==(const PyValue& a, const PyValue& b);
  friend bool operator!=(const PyValue& a, const PyValue& b) { return !(a == b); }

  struct Node;  // the shared payload of str, bytes and containers (defined in pickle.cpp)

 private:
  friend class PickleReader;
  friend class PickleWriter;

  Kind kind_ = Kind::kNone;
  union {
    bool b;
    std::int64_t i;
    double f;
  } scalar_{};
  std::shared_ptr<Node> node_;
};

// Parses a whole pickle. `source_name` (a file name) is quoted in error messages with the byte
// offset of the offending opcode.
struct PickleOptions {
  // Globals, calls, instances and persistent ids become inert kGlobal / kObject / kPersistentId
  // values (see the top of this file) instead of errors.
  bool objects = false;
  // Called for each persistent id when `objects` is set; its result replaces the id on the stack
  // (as Python's Unpickler.persistent_load). Unset: the id stays a kPersistentId value.
  std::function<PyValue(const PyValue& id)> persistent_load;
};
// The globals a weight file may name (PickleOptions::objects): torch's tensor, storage and
// parameter rebuilding, sizes, devices and dtypes, TorchScript's classes and builders, numpy's
// array reconstruction, OrderedDict, _codecs.encode, argparse.Namespace and a few builtins. Any
// other global is an error naming it, unless it is only the class of an object that NEWOBJ
// creates and BUILD gives a torch.nn.Module's state (torch.save(model) stores modules so);
// REDUCE, OBJ and INST of one (what runs code in Python: os.system, builtins.eval) fail at once.
bool is_weight_file_global(std::string_view module, std::string_view name);

PyValue parse_pickle(std::string_view bytes, const std::string& source_name,
                     const PickleOptions& options = {});
PyValue load_pickle(const std::filesystem::path& file, const PickleOptions& options = {});

// The bytes parse_pickle consumed up to and including STOP (torch's legacy format concatenates
// pickles and raw data, so the next one starts there).
std::size_t parse_pickle_prefix(std::string_view bytes, const std::string& source_name,
                                const PickleOptions& options, PyValue& out);

// Serialises `value` with protocol 2 to 5. Protocol 2 streams use only opcodes Python 2.7 reads
// too; bytes are then written the way Python 3 does it, as _codecs.encode(latin-1 text, 'latin1').
// A str that is not valid UTF-8 (a Python 2 byte string read from a pickle) cannot be written as
// unicode and throws.
std::string write_pickle(const PyValue& value, int protocol = 2);
// Writes to path + ".tmp" and renames it over `path`, so a failed write leaves the old file (and
// no temporary).
void save_pickle(const std::filesystem::path& path, const PyValue& value, int protocol = 2);
// save_pickle of a list of `count` items that `next_item` makes one at a time, each dropped once
// written: the same bytes as save_pickle(PyValue::list(items)) when no two items share a value,
// without holding the list (a RefCOCO-sized refs file).
void save_pickle_list(const std::filesystem::path& path, std::size_t count,
                      const std::function<PyValue()>& next_item, int protocol = 2);

}  // namespace wico::data
