// Tests of the native pickle reader and writer: fixtures written by Python with every protocol,
// the refer pickle variants, hand-made Python 2 streams, round trips (checked by Python itself
// when /usr/bin/python3 is there), and corrupt input.
#include "wico/data/pickle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "test_util.h"
#include "wico/core/error.h"

namespace wico::data {
namespace {

using ::testing::HasSubstr;
using test::TempDir;

const std::filesystem::path kDataDir = WICO_TEST_DATA_DIR;
const char* const kPython = "/usr/bin/python3";

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The tagged JSON of scripts/make_pickle_fixtures.py back into a PyValue.
PyValue from_tagged_json(const nlohmann::json& j) {
  if (j.is_null()) return PyValue::none();
  if (j.is_boolean()) return PyValue::boolean(j.get<bool>());
  if (j.is_string()) return PyValue::string(j.get<std::string>());
  if (j.is_array()) {
    PyValue::List items;
    for (const auto& item : j) items.push_back(from_tagged_json(item));
    return PyValue::list(std::move(items));
  }
  if (j.contains("int")) return PyValue::integer(j["int"].get<std::int64_t>());
  if (j.contains("float")) return PyValue::real(j["float"].get<double>());
  if (j.contains("bytes")) {
    const std::string hex = j["bytes"].get<std::string>();
    std::string raw;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
      raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
    return PyValue::bytes(raw);
  }
  if (j.contains("tuple")) return PyValue::tuple(from_tagged_json(j["tuple"]).as_list());
  PyValue::Dict entries;
  for (const auto& pair : j["dict"]) {
    entries.emplace_back(from_tagged_json(pair[0]), from_tagged_json(pair[1]));
  }
  return PyValue::dict(std::move(entries));
}

PyValue expected_all_types() {
  std::ifstream in(kDataDir / "pickle" / "all_types.json");
  return from_tagged_json(nlohmann::json::parse(in));
}

std::filesystem::path all_types_file(int protocol) {
  return kDataDir / "pickle" / ("all_types_protocol" + std::to_string(protocol) + ".pkl");
}

// The message of the wico::Error that `fn` throws.
template <typename Fn>
std::string error_of(Fn fn) {
  return test::thrown_message<Error>(fn);
}

// A byte string from a literal, NULs included.
template <std::size_t N>
std::string B(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

std::string parse_error(const std::string& bytes) {
  return error_of([&] { parse_pickle(bytes, "test.p"); });
}
template <std::size_t N>
std::string parse_error(const char (&literal)[N]) {
  return parse_error(B(literal));
}

bool have_python() { return std::filesystem::exists(kPython); }

// Runs a Python snippet with /usr/bin/python3; returns its stdout and stderr.
std::string run_python(const std::string& script, const TempDir& dir) {
  const auto file = dir.write("check.py", script);
  const std::string command = std::string(kPython) + " " + file.string() + " 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  pclose(pipe);
  return output;
}

// ---- reading what Python wrote --------------------------------------------------------------------

class PickleProtocols : public ::testing::TestWithParam<int> {};

TEST_P(PickleProtocols, ReadsEveryTypePythonWrites) {
  const PyValue value = load_pickle(all_types_file(GetParam()));
  EXPECT_EQ(value, expected_all_types()) << value.repr(2000);
}

TEST_P(PickleProtocols, KeepsValuesExactly) {
  const PyValue v = load_pickle(all_types_file(GetParam()));
  EXPECT_TRUE(v.at("none").is_none());
  EXPECT_TRUE(v.at("true").as_bool());
  EXPECT_EQ(v.at("ints")[13].as_int(), INT64_MAX);
  EXPECT_EQ(v.at("ints")[14].as_int(), INT64_MIN);
  EXPECT_EQ(v.at("floats")[2].as_float(), 0.1);
  EXPECT_EQ(v.at("floats")[3].as_float(), 1e-300);
  EXPECT_TRUE(std::signbit(v.at("floats")[1].as_float()));
  EXPECT_EQ(v.at("strs")[2].as_str(), "caf\xc3\xa9");
  EXPECT_EQ(v.at("strs")[4].as_str(), "emoji \xf0\x9f\x98\x80");
  EXPECT_EQ(v.at("strs")[7].as_str(), std::string("\0\x1a\x7f\xc2\x80\xc3\xbf", 7));
  EXPECT_EQ(v.at("bytes")[2].as_bytes().size(), 256u);
  EXPECT_EQ(v.at("long_list").size(), 2500u);
  EXPECT_EQ(v.at("big_dict").at("k39").as_int(), 39);
  EXPECT_EQ(v.at("int_keys").find(PyValue::integer(1LL << 40))->as_str(), "big");
  EXPECT_EQ(v.at("other_keys").find(PyValue::tuple({PyValue::integer(1), PyValue::string("a")}))
                ->as_str(),
            "tuple");
  EXPECT_TRUE(v.at("tuples")[3].is_tuple());
  // The memo shares objects, as Python does: one list, not two copies.
  const PyValue& shared = v.at("shared");
  EXPECT_EQ(&shared[0].as_list(), &shared[1].as_list());
}

INSTANTIATE_TEST_SUITE_P(Pickle, PickleProtocols, ::testing::Values(0, 1, 2, 3, 4, 5));

TEST(PickleRefer, AllSixVariantsGiveTheSameRefs) {
  const auto dir = kDataDir / "refer" / "pickle-variants";
  const PyValue reference = load_pickle(dir / "refcoco_unc_protocol2.p");
  for (const char* name :
       {"refcoco_unc_protocol0.p", "refcoco_unc_protocol1.p", "refcoco_unc_protocol4.p",
        "refcoco_unc_protocol5.p", "refcoco_unc_ordereddict_protocol2.p"}) {
    SCOPED_TRACE(name);
    const PyValue refs = load_pickle(dir / name);
    ASSERT_TRUE(refs.is_list());
    EXPECT_EQ(refs, reference);
    // Field by field as well, in the order the refer loader reads them.
    ASSERT_EQ(refs.size(), reference.size());
    for (std::size_t i = 0; i < refs.size(); ++i) {
      for (const char* key : {"ref_id", "ann_id", "image_id", "category_id", "split", "file_name",
                              "sent_ids", "sentences"}) {
        EXPECT_EQ(refs[i].at(key), reference[i].at(key)) << key;
      }
    }
  }
  ASSERT_EQ(reference.size(), 8u);
  const PyValue& first = reference[0];
  EXPECT_EQ(first.at("ref_id").as_int(), 10505);
  EXPECT_EQ(first.at("image_id").as_int(), 460986);
  EXPECT_EQ(first.at("split").as_str(), "train");
  EXPECT_EQ(first.at("sent_ids")[2].as_int(), 29911);
  EXPECT_EQ(first.at("sentences")[0].at("sent").as_str(), "left vase");
  EXPECT_EQ(first.at("sentences")[1].at("tokens")[3].as_str(), "left");
  std::vector<std::string> splits;
  for (const PyValue& ref : reference.as_list()) splits.push_back(ref.at("split").as_str());
  EXPECT_EQ(splits, (std::vector<std::string>{"train", "train", "testA", "testA", "testB",
                                              "testB", "val", "val"}));
}

// ---- hand-made streams in the forms Python 2's cPickle writes ----------------------------------

TEST(PickleReader, ReadsPython2TextForms) {
  // [str 'it\'s\n', True, False, 123L, 0.5, u'caf\xe9 \u65e5', 7, None]
  const std::string p0 =
      "(lp0\nS'it\\'s\\n'\np1\naI01\naI00\naL123L\naF0.5\naV"
      "caf\xe9 \\u65e5\np2\naI7\naNa.";
  const PyValue v = parse_pickle(p0, "p0");
  ASSERT_EQ(v.size(), 8u);
  EXPECT_EQ(v[0].as_str(), "it's\n");
  EXPECT_TRUE(v[1].as_bool());
  EXPECT_FALSE(v[2].as_bool());
  EXPECT_EQ(v[3].as_int(), 123);
  EXPECT_EQ(v[4].as_float(), 0.5);
  EXPECT_EQ(v[5].as_str(), "caf\xc3\xa9 \xe6\x97\xa5");
  EXPECT_EQ(v[6].as_int(), 7);
  EXPECT_TRUE(v[7].is_none());
}

TEST(PickleReader, ReadsPython2BinaryStringsAsStr) {
  // Protocol 2: a dict {'sent': 'a man', 'raw': <BINSTRING 'x y'>} with SHORT_BINSTRING keys.
  const std::string p2 = B("\x80\x02}q\x00(U\x04sentq\x01U\x05" "a manq\x02U\x03rawq\x03T"
                           "\x03\x00\x00\x00" "x yq\x04u.");
  const PyValue v = parse_pickle(p2, "p2");
  EXPECT_EQ(v.at("sent").as_str(), "a man");
  EXPECT_EQ(v.at("raw").as_str(), "x y");
}

TEST(PickleReader, ReadsPython2OrderedDictAsItemPairs) {
  // Python 2's OrderedDict.__reduce__ gives (OrderedDict, ([[k, v], ...],)).
  const std::string p2 = B(
      "\x80\x02" "ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(U\x01" "bK\x01" "e]q\x03(U\x01"
      "aK\x02" "ee\x85Rq\x04.");
  const PyValue v = parse_pickle(p2, "od");
  ASSERT_TRUE(v.is_dict());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v.as_dict()[0].first.as_str(), "b");
  EXPECT_EQ(v.at("a").as_int(), 2);
}

TEST(PickleReader, LaterSetItemReplacesEqualKey) {
  // {1: 'a', True: 'b', 1.0: 'c'} is one entry in Python, keyed 1 with value 'c'.
  const std::string p = B("\x80\x02}(K\x01X\x01\x00\x00\x00" "a\x88X\x01\x00\x00\x00" "b"
                          "G?\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00" "cu.");
  const PyValue v = parse_pickle(p, "keys");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v.as_dict()[0].first.as_int(), 1);
  EXPECT_EQ(v.as_dict()[0].second.as_str(), "c");
}

TEST(PickleReader, ReadsLargeDictsWithTheIndex) {
  PyValue::Dict entries;
  for (int i = 0; i < 100; ++i) {
    entries.emplace_back(PyValue::string("key" + std::to_string(i)), PyValue::integer(i));
  }
  const PyValue v = parse_pickle(write_pickle(PyValue::dict(entries)), "big");
  EXPECT_EQ(v.size(), 100u);
  EXPECT_EQ(v.at("key77").as_int(), 77);
  EXPECT_EQ(v.find("nope"), nullptr);
}

// ---- errors ---------------------------------------------------------------------------------------

TEST(PickleErrors, EveryTruncationThrows) {
  for (const auto& file :
       {kDataDir / "refer" / "pickle-variants" / "refcoco_unc_protocol0.p",
        kDataDir / "refer" / "pickle-variants" / "refcoco_unc_ordereddict_protocol2.p",
        kDataDir / "refer" / "pickle-variants" / "refcoco_unc_protocol5.p",
        all_types_file(4)}) {
    const std::string bytes = read_bytes(file);
    ASSERT_FALSE(bytes.empty());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      try {
        parse_pickle(std::string_view(bytes).substr(0, n), "cut.p");
        ADD_FAILURE() << file << " cut at " << n << " parsed";
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("cut.p"));
      }
    }
  }
}

TEST(PickleErrors, BadOpcodeNamesItsOffset) {
  const std::string message = parse_error("\x80\x02K\x01\xff.");
  EXPECT_THAT(message, HasSubstr("invalid opcode 0xff"));
  EXPECT_THAT(message, HasSubstr("byte offset 4 in test.p"));
}

TEST(PickleErrors, UnsupportedGlobalIsNamed) {
  const std::string message = parse_error("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
  EXPECT_THAT(message, HasSubstr("unsupported construct: global 'os.system'"));
  EXPECT_THAT(message, HasSubstr("offset 2"));
  EXPECT_THAT(message, HasSubstr("test.p"));
  EXPECT_THAT(parse_error("\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93."), HasSubstr("numpy.ndarray"));
}

std::string weight_error(const std::string& bytes) {
  PickleOptions options;
  options.objects = true;
  return error_of([&] { parse_pickle(bytes, "weights.pth", options); });
}

// What a malicious "checkpoint" does: call os.system, builtins.eval or subprocess.Popen when
// Python unpickles it. Read as a weight file each is an error naming the global, before any value
// is returned (nothing is executed either way).
TEST(PickleWeightGlobals, CallsOutsideTheAllowListAreRefused) {
  // GLOBAL + REDUCE (protocol 2), as pickle.dumps of an object whose __reduce__ is os.system.
  std::string message = weight_error(B("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00ls\x85R."));
  EXPECT_THAT(message, HasSubstr("global 'os.system' at byte offset 2 in weights.pth is not "
                                 "allowed in a weight file"));
  // STACK_GLOBAL + REDUCE (protocol 4).
  message = weight_error(B("\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93\x8c\x03" "1+1" "\x85R."));
  EXPECT_THAT(message, HasSubstr("global 'builtins.eval'"));
  // INST (protocol 0) calls the class too.
  EXPECT_THAT(weight_error(B("(S'ls'\nisubprocess\nPopen\n.")),
              HasSubstr("global 'subprocess.Popen'"));
  // OBJ.
  EXPECT_THAT(weight_error(B("\x80\x02(csubprocess\nPopen\nX\x02\x00\x00\x00lso.")),
              HasSubstr("global 'subprocess.Popen'"));
  // Instantiated without a call (NEWOBJ) but given no module state: still refused.
  EXPECT_THAT(weight_error(B("\x80\x02" "csubprocess\nPopen\n)\x81}b.")),
              HasSubstr("global 'subprocess.Popen'"));
  // Named and left as a value.
  EXPECT_THAT(weight_error(B("\x80\x02" "cos\nsystem\n\x85.")), HasSubstr("global 'os.system'"));
}

TEST(PickleWeightGlobals, TheAllowListAndModuleClassesLoad) {
  EXPECT_TRUE(is_weight_file_global("torch._utils", "_rebuild_tensor_v2"));
  EXPECT_TRUE(is_weight_file_global("torch", "FloatStorage"));
  EXPECT_TRUE(is_weight_file_global("torch.cuda", "HalfStorage"));
  EXPECT_TRUE(is_weight_file_global("numpy.core.multiarray", "_reconstruct"));
  EXPECT_TRUE(is_weight_file_global("collections", "OrderedDict"));
  EXPECT_TRUE(is_weight_file_global("argparse", "Namespace"));
  EXPECT_FALSE(is_weight_file_global("os", "system"));
  EXPECT_FALSE(is_weight_file_global("builtins", "eval"));
  EXPECT_FALSE(is_weight_file_global("torch", "load"));
  EXPECT_FALSE(is_weight_file_global("numpy.core.multiarray", "frombuffer"));
  // A user's nn.Module class, as torch.save(model) writes it: NEWOBJ, then BUILD with a dict
  // holding _parameters. Loads as an inert object.
  PickleOptions options;
  options.objects = true;
  const PyValue module = parse_pickle(
      B("\x80\x02" "c__main__\nTinyMatcher\n)\x81}X\x0b\x00\x00\x00_parameters}sb."),
      "model.pth", options);
  EXPECT_EQ(module.class_name(), "__main__.TinyMatcher");
  EXPECT_TRUE(module.object_state().find("_parameters") != nullptr);
  // The same class called (REDUCE) is refused even when another instance got a module's state.
  EXPECT_THAT(weight_error(B("\x80\x02" "c__main__\nTinyMatcher\n)R.")),
              HasSubstr("global '__main__.TinyMatcher'"));
}

TEST(PickleWeightGlobals, PythonsOwnExploitPickleIsRefused) {
  if (!have_python()) GTEST_SKIP() << kPython << " is not installed";
  const TempDir dir;
  // The pickles Python itself writes for the three classic payloads, plain and inside a
  // torch.save archive.
  const std::string out = run_python(
      "import os, pickle, subprocess, builtins, sys\n"
      "class A:\n    def __reduce__(self): return (os.system, ('echo pwned',))\n"
      "class B:\n    def __reduce__(self): return (builtins.eval, ('1+1',))\n"
      "class C:\n    def __reduce__(self): return (subprocess.Popen, (['true'],))\n"
      "for name, obj in (('a', A()), ('b', B()), ('c', C())):\n"
      "    for proto in (0, 2, 4):\n"
      "        open('" + dir.path().string() + "/%s%d.p' % (name, proto), 'wb').write("
      "pickle.dumps({'model': obj}, protocol=proto))\n"
      "print('ok')\n",
      dir);
  ASSERT_THAT(out, HasSubstr("ok"));
  // Below protocol 3 Python writes the Python 2 names of builtins and subprocess.
  const std::map<std::string, std::pair<std::string, std::string>> expected = {
      {"a", {"'posix.system'", "'posix.system'"}},
      {"b", {"'__builtin__.eval'", "'builtins.eval'"}},
      {"c", {"'commands.Popen'", "'subprocess.Popen'"}}};
  for (const auto& [name, globals] : expected) {
    for (const int proto : {0, 2, 4}) {
      const std::string& global = proto < 3 ? globals.first : globals.second;
      PickleOptions options;
      options.objects = true;
      const std::string file = (dir.path() / (name + std::to_string(proto) + ".p")).string();
      const std::string message = error_of([&] { load_pickle(file, options); });
      EXPECT_THAT(message, HasSubstr("global " + global)) << file;
      EXPECT_THAT(message, HasSubstr("is not allowed in a weight file")) << file;
    }
  }
}

TEST(PickleErrors, MissingMemoKey) {
  EXPECT_THAT(parse_error("\x80\x02h\x05."), HasSubstr("memo key 5 not found"));
  EXPECT_THAT(parse_error("(g12\n."), HasSubstr("memo key 12 not found"));
  EXPECT_THAT(parse_error("\x80\x02j\x00\x00\x01\x00."), HasSubstr("memo key 65536"));
}

TEST(PickleErrors, IntBeyond64BitsNamesOffset) {
  // 2**64 as LONG1 (9 bytes) and as protocol 0 text.
  const std::string long1 = std::string("\x80\x02]K\x01\x8a\x09", 7) + std::string(8, '\0') +
                            std::string("\x01" "a.", 3);
  const std::string message = parse_error(long1);
  EXPECT_THAT(message, HasSubstr("64 bits"));
  EXPECT_THAT(message, HasSubstr("offset 5"));
  EXPECT_THAT(parse_error("L18446744073709551616L\n."), HasSubstr("does not fit in 64 bits"));
  // Sign-extended longs that do fit are fine.
  const std::string minus_one = std::string("\x80\x02\x8a\x09", 4) + std::string(9, '\xff') + ".";
  EXPECT_EQ(parse_pickle(minus_one, "m").as_int(), -1);
}

TEST(PickleErrors, CorruptStructures) {
  EXPECT_THAT(parse_error(""), HasSubstr("no STOP"));
  EXPECT_THAT(parse_error("."), HasSubstr("stack underflow"));
  EXPECT_THAT(parse_error("\x80\x09N."), HasSubstr("protocol 9"));
  EXPECT_THAT(parse_error("\x80\x02X\xff\xff\xff\x7f" "abc."), HasSubstr("exceeds"));
  EXPECT_THAT(parse_error("\x80\x02]NNs."), HasSubstr("SETITEM on a list"));
  EXPECT_THAT(parse_error("\x80\x02}]K\x01s."), HasSubstr("unhashable"));
  EXPECT_THAT(parse_error("\x80\x02K\x01" "a."), HasSubstr("stack underflow"));
  EXPECT_THAT(parse_error("\x80\x02" "e."), HasSubstr("MARK"));
  EXPECT_THAT(parse_error("\x80\x02" "c__builtin__\neval\n."), HasSubstr("__builtin__.eval"));
  EXPECT_THAT(parse_error("\x80\x02" "ccollections\nOrderedDict\n."), HasSubstr("bare global"));
}

TEST(PickleErrors, RefusesCyclesAndDeepNesting) {
  // l = []; l.append(l)
  EXPECT_THAT(parse_error("\x80\x02]q\x00h\x00" "a."), HasSubstr("contains itself"));
  // 5000 nested lists.
  const std::string deep = "\x80\x02" + std::string(5000, ']') + std::string(4999, 'a') + ".";
  EXPECT_THAT(parse_error(deep), HasSubstr("nested deeper than 1000"));
  // Shared nesting counts too: depth 600 reached twice in a chain is 1200 deep.
  // The second chain's innermost list receives the first chain: 1200 levels.
  std::string shared = "\x80\x02" + std::string(600, ']') + std::string(599, 'a') + B("q\x00");
  shared += std::string(600, ']') + B("h\x00" "a") + std::string(599, 'a') + ".";
  EXPECT_THAT(parse_error(shared), HasSubstr("nested deeper"));
  // 900 levels are fine.
  const std::string ok = "\x80\x02" + std::string(900, ']') + std::string(899, 'a') + ".";
  EXPECT_TRUE(parse_pickle(ok, "ok").is_list());
}

// ---- PyValue --------------------------------------------------------------------------------------

TEST(PickleValue, TypedAccessErrorsNameBothKinds) {
  const PyValue v = PyValue::string("hello");
  const std::string message = error_of([&] { v.as_int(); });
  EXPECT_THAT(message, HasSubstr("expected a Python int, got str 'hello'"));
  EXPECT_THAT(error_of([&] { v[0]; }), HasSubstr("list or tuple"));
  EXPECT_EQ(PyValue::integer(3).as_float(), 3.0);
}

TEST(PickleValue, AtListsTheKeys) {
  const PyValue d = PyValue::dict({{PyValue::string("ref_id"), PyValue::integer(1)},
                                   {PyValue::string("split"), PyValue::string("val")}});
  EXPECT_EQ(d.at("split").as_str(), "val");
  EXPECT_EQ(d.find("missing"), nullptr);
  const std::string message = error_of([&] { d.at("sent_ids"); });
  EXPECT_THAT(message, HasSubstr("'sent_ids'"));
  EXPECT_THAT(message, HasSubstr("'ref_id', 'split'"));
  EXPECT_THAT(error_of([&] { PyValue::dict({{PyValue::list({}), PyValue()}}); }),
              HasSubstr("unhashable"));
}

TEST(PickleValue, ReprIsPythonLikeAndTruncated) {
  const PyValue v = PyValue::dict(
      {{PyValue::string("a"), PyValue::tuple({PyValue::integer(1)})},
       {PyValue::bytes("\x01"), PyValue::list({PyValue::real(0.5), PyValue::boolean(true),
                                               PyValue::none(), PyValue::real(2.0)})}});
  EXPECT_EQ(v.repr(), "{'a': (1,), b'\\x01': [0.5, True, None, 2.0]}");
  PyValue::List many(10000, PyValue::integer(12345));
  const std::string cut = PyValue::list(many).repr(50);
  EXPECT_EQ(cut.size(), 53u);
  EXPECT_EQ(cut.substr(50), "...");
}

// ---- writing -------------------------------------------------------------------------------------

class PickleWriteProtocols : public ::testing::TestWithParam<int> {};

TEST_P(PickleWriteProtocols, RoundTripsEveryType) {
  const PyValue value = expected_all_types();
  const std::string bytes = write_pickle(value, GetParam());
  EXPECT_EQ(parse_pickle(bytes, "ours"), value);
  // Writing what we read gives the same bytes (the memo structure survives too).
  EXPECT_EQ(write_pickle(parse_pickle(bytes, "ours"), GetParam()), bytes);
}

TEST_P(PickleWriteProtocols, PythonReadsWhatWeWrite) {
  if (!have_python()) GTEST_SKIP() << kPython << " not found";
  TempDir dir;
  const auto file = dir.path() / "ours.pkl";
  save_pickle(file, load_pickle(all_types_file(4)), GetParam());
  const std::string script =
      "import json, pickle, pickletools, sys\n"
      "sys.path.insert(0, " + nlohmann::json((kDataDir / ".." / ".." / "scripts").string()).dump() +
      ")\n"
      "from make_pickle_fixtures import tagged\n"
      "data = open(" + nlohmann::json(file.string()).dump() + ", 'rb').read()\n"
      "value = pickle.loads(data)\n"
      "expected = json.load(open(" +
      nlohmann::json((kDataDir / "pickle" / "all_types.json").string()).dump() +
      ", encoding='utf-8'))\n"
      "print('EQUAL' if json.loads(json.dumps(tagged(value))) == expected else 'DIFFERENT')\n"
      "print('max proto', max(op.proto for op, _, _ in pickletools.genops(data)))\n";
  const std::string output = run_python(script, dir);
  EXPECT_THAT(output, HasSubstr("EQUAL")) << output;
  EXPECT_THAT(output, ::testing::Not(HasSubstr("DIFFERENT"))) << output;
  if (GetParam() == 2) {
    EXPECT_THAT(output, HasSubstr("max proto 2")) << output;
  }
}

INSTANTIATE_TEST_SUITE_P(Pickle, PickleWriteProtocols, ::testing::Values(2, 3, 4, 5));

TEST(PickleWriter, Protocol2WritesBytesAsCodecsEncode) {
  const std::string bytes = write_pickle(PyValue::bytes(std::string("\x00\xff", 2)), 2);
  EXPECT_THAT(bytes, HasSubstr("c_codecs\nencode\n"));
  EXPECT_EQ(parse_pickle(bytes, "b").as_bytes(), std::string("\x00\xff", 2));
  EXPECT_THAT(write_pickle(PyValue::bytes("x"), 3), ::testing::Not(HasSubstr("_codecs")));
}

TEST(PickleWriter, RejectsWhatItCannotWrite) {
  EXPECT_THAT(error_of([] { write_pickle(PyValue::string("\xff"), 2); }),
              HasSubstr("not valid UTF-8"));
  EXPECT_THAT(error_of([] { write_pickle(PyValue(), 1); }), HasSubstr("protocol 1"));
}

TEST(PickleWriter, SavesAtomically) {
  TempDir dir;
  const auto file = dir.path() / "refs(unc).p";
  const PyValue refs = load_pickle(kDataDir / "refer" / "pickle-variants" /
                                   "refcoco_unc_ordereddict_protocol2.p");
  save_pickle(file, refs);
  EXPECT_FALSE(std::filesystem::exists(file.string() + ".tmp"));
  EXPECT_EQ(load_pickle(file), refs);
  EXPECT_THAT(error_of([&] { load_pickle(dir.path() / "absent.p"); }), HasSubstr("absent.p"));
}

TEST(PickleWriter, StreamedListHasTheBytesOfTheWholeList) {
  TempDir dir;
  // The real refs (dicts, lists, str and ints, with memo references inside each ref), and a
  // long list of them, past Python's 1,000-item APPENDS batches and the 256-entry short memo.
  const PyValue real = load_pickle(kDataDir / "refer" / "pickle-variants" /
                                   "refcoco_unc_ordereddict_protocol2.p");
  for (const std::size_t count : {std::size_t{0}, std::size_t{1}, real.size(), std::size_t{2345}}) {
    for (const int protocol : {2, 4}) {
      // Fresh copies, so that no two items share a node (what the streamed writer requires).
      const auto item = [&](std::size_t i) {
        return parse_pickle(write_pickle(real[i % real.size()], protocol), "copy");
      };
      PyValue::List items;
      for (std::size_t i = 0; i < count; ++i) items.push_back(item(i));
      const auto whole = dir.path() / "whole.p";
      const auto streamed = dir.path() / "streamed.p";
      save_pickle(whole, PyValue::list(items), protocol);
      std::size_t next = 0;
      save_pickle_list(streamed, count, [&] { return item(next++); }, protocol);
      EXPECT_EQ(next, count);
      EXPECT_EQ(test::read_file(streamed), test::read_file(whole))
          << count << " items, protocol " << protocol;
      EXPECT_FALSE(std::filesystem::exists(streamed.string() + ".tmp"));
    }
  }
}

}  // namespace
}  // namespace wico::data
