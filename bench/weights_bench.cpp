// `wico bench weights`: loading the published weights LAVT starts from (Swin-B/12 + BERT-base,
// about 900 MB of float32) from each format into our modules, against torch.load in Debian's
// python3-torch on the same files in the same run. Python writes the files (official Swin names
// in a torch.save zip; HF BERT names as a legacy torch.save .bin and as safetensors), then times
// torch.load of each in a fresh interpreter (its peak resident memory from getrusage). Ours:
// seconds of read + import, and the peak resident memory above the model's own weights
// (VmHWM reset through /proc/self/clear_refs before each load), against the file's size.
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "wico/bottomup/lavt/lavt.h"
#include "wico/core/benchmark.h"
#include "wico/core/error.h"
#include "wico/core/stopwatch.h"
#include "wico/io/import.h"
#include "wico/io/weights.h"

namespace wico {

namespace {

// VmRSS / VmHWM of this process in MB.
double status_mb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return 0.0;
}

void reset_peak() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // resets VmHWM to the current resident size (Linux >= 4.0)
}

// Writes the files from a list of (name, shape) per file and times torch.load of each.
const char* const kPython = R"PY(
import json, os, struct, subprocess, sys, time
import torch
spec = json.load(open(SPEC))
torch.manual_seed(0)
def tensors(entries, hf=False):
    out = {}
    for name, shape, dtype in entries:
        if dtype == 'int64':
            out[name] = torch.randint(0, 100, shape, dtype=torch.int64)
        else:
            out[name] = torch.randn(shape) * 0.02
    return out
swin = tensors(spec['swin'])
torch.save({'model': swin}, os.path.join(DIR, 'swin.pth'))
bert = tensors(spec['bert'])
torch.save(bert, os.path.join(DIR, 'bert.bin'), _use_new_zipfile_serialization=False)
def st_write(path, ts):
    header, offset, blobs = {}, 0, []
    for name in sorted(ts, key=lambda n: (-ts[n].element_size(), n)):
        t = ts[name].contiguous()
        b = t.numpy().tobytes()
        dt = {torch.float32: 'F32', torch.int64: 'I64'}[t.dtype]
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
st_write(os.path.join(DIR, 'bert.safetensors'), bert)
del swin, bert
# VmHWM, not getrusage: Linux carries ru_maxrss of the forking parent across exec.
hwm = ("def hwm():\n"
       "    for line in open('/proc/self/status'):\n"
       "        if line.startswith('VmHWM:'): return float(line.split()[1]) / 1024.0\n")
probe = ("import sys, time, torch\n" + hwm +
         "torch.set_num_threads(%d)\n"
         "t = time.perf_counter(); d = torch.load(sys.argv[1], map_location='cpu'); s = time.perf_counter() - t\n"
         "print(s, hwm())\n")
base = "import torch\n" + hwm + "print(hwm())\n"
idle = float(subprocess.run([sys.executable, '-c', base], capture_output=True, text=True,
                            check=True).stdout)
result = {'interpreter_mb': idle}
for name in ('swin.pth', 'bert.bin'):
    best = None
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, '-c', probe % THREADS, os.path.join(DIR, name)],
                             capture_output=True, text=True, check=True).stdout.split()
        s, peak = float(out[0]), float(out[1])
        best = (s, peak) if best is None or s < best[0] else best
    result[name] = {'seconds': best[0], 'peak_mb': best[1] - idle}
print(json.dumps(result))
)PY";

struct Load {
  std::string file, format, map;
  double seconds = 0, extra_mb = 0, file_mb = 0;
};

}  // namespace

nlohmann::json bench_weights(const BenchContext& ctx) {
  at::set_num_threads(ctx.runtime.threads);
  torch::manual_seed(0);
  bottomup::LavtOptions options;  // paper size: Swin-B/12, BERT-base
  if (ctx.quick) {
    options.swin = backbones::SwinOptions::tiny(7);
  }
  bottomup::LavtBackend lavt(options);
  const std::int64_t values = [&] {
    std::int64_t n = 0;
    for (const auto& t : lavt.swin()->parameters()) n += t.numel();
    for (const auto& t : lavt.bert()->parameters()) n += t.numel();
    return n;
  }();

  // The files' names: the official Swin's (our Swin less the segmentation norms) and HF BERT's.
  nlohmann::json spec = {{"swin", nlohmann::json::array()}, {"bert", nlohmann::json::array()}};
  auto add = [&](const char* key, const std::string& name, const at::Tensor& t) {
    spec[key].push_back({name, t.sizes().vec(), t.scalar_type() == at::kLong ? "int64" : "float32"});
  };
  for (const auto& p : lavt.swin()->named_parameters()) {
    if (p.key().rfind("norm", 0) == 0 || p.key().find(".fusion.") != std::string::npos ||
        p.key().find(".res_gate.") != std::string::npos) {
      continue;
    }
    add("swin", p.key(), p.value());
  }
  for (const auto& b : lavt.swin()->named_buffers()) add("swin", b.key(), b.value());
  for (const auto& p : lavt.bert()->named_parameters()) add("bert", "bert." + p.key(), p.value());

  const ScratchDir scratch("weights");
  const std::filesystem::path dir = scratch.path();
  std::filesystem::create_directories(dir);
  { std::ofstream(dir / "spec.json") << spec.dump(); }
  std::string script = std::string("SPEC = ") + nlohmann::json((dir / "spec.json").string()).dump() +
                       "\nDIR = " + nlohmann::json(dir.string()).dump() +
                       "\nREPEATS = " + std::to_string(ctx.repeats) +
                       "\nTHREADS = " + std::to_string(ctx.runtime.threads) + "\n" + kPython;
  std::cout << "writing Swin and BERT files with python3-torch in " << dir.string() << "...\n";
  const nlohmann::json python = run_python_reference(ctx.python, script);
  if (python.is_null() && !std::filesystem::exists(dir / "swin.pth")) {
    std::cout << "no Python reference: the files are written by python3-torch, nothing to load\n";
    return {{"python", nullptr}};
  }

  std::vector<Load> loads = {{"swin.pth", "", "swin"}, {"bert.bin", "", "hf_bert"},
                             {"bert.safetensors", "", "hf_bert"}};
  for (Load& load : loads) {
    const auto path = dir / load.file;
    load.file_mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
    double best = 1e30, extra = 0;
    for (int r = 0; r < ctx.repeats; ++r) {
      torch::nn::Module& target = load.map == "swin" ? static_cast<torch::nn::Module&>(*lavt.swin())
                                                     : static_cast<torch::nn::Module&>(*lavt.bert());
      const double before = status_mb("VmRSS");
      reset_peak();
      const auto start = std::chrono::steady_clock::now();
      {
        const io::WeightFile file = io::read_weights(path);
        load.format = io::format_name(file.format);
        io::import_weights(target, file, io::name_map(load.map), io::ImportMode::kPartial);
      }
      const double seconds = seconds_since(start);
      if (seconds < best) {
        best = seconds;
        extra = status_mb("VmHWM") - before;
      }
    }
    load.seconds = best;
    load.extra_mb = extra;
  }

  std::cout << fmt::format(
      "Loading LAVT's starting weights ({}, {:.1f}M values), {} threads, best of {}\n"
      "  {:<18} {:>12} {:>8} {:>10} {:>12} {:>10} {:>10}\n",
      ctx.quick ? "Swin-T/7 + BERT-base" : "Swin-B/12 + BERT-base", values / 1e6,
      ctx.runtime.threads, ctx.repeats, "file", "format", "MB", "ours s", "peak +MB", "torch s",
      "torch MB");
  nlohmann::json out = {{"values", values}, {"threads", ctx.runtime.threads}, {"loads", nlohmann::json::array()}};
  for (const Load& load : loads) {
    const nlohmann::json* py = python.is_object() && python.contains(load.file) ? &python[load.file] : nullptr;
    std::cout << fmt::format("  {:<18} {:>12} {:>8.0f} {:>10.2f} {:>12.0f} {:>10} {:>10}\n",
                             load.file, load.format, load.file_mb, load.seconds, load.extra_mb,
                             py ? fmt::format("{:.2f}", (*py)["seconds"].get<double>()) : "-",
                             py ? fmt::format("{:.0f}", (*py)["peak_mb"].get<double>()) : "-");
    out["loads"].push_back({{"file", load.file},
                            {"format", load.format},
                            {"file_mb", load.file_mb},
                            {"seconds", load.seconds},
                            {"peak_extra_mb", load.extra_mb},
                            {"torch_load", py ? *py : nlohmann::json()}});
  }
  std::cout << "  peak +MB: resident memory above the model's own weights during the load (the\n"
               "  file's pages are mapped and released as copied); torch MB: torch.load's peak\n"
               "  above an idle interpreter (it returns the tensors; ours copies them in place)\n";
  return out;
}

}  // namespace wico
