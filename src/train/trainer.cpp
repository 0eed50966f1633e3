#include "wico/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <spdlog/spdlog.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "wico/backbones/resnet.h"
#include "wico/core/core_share.h"
#include "wico/core/error.h"
#include "wico/io/pretrained.h"
#include "wico/core/logging.h"
#include "wico/core/progress.h"
#include "wico/core/run_dir.h"
#include "wico/core/runtime.h"
#include "wico/core/stopwatch.h"
#include "wico/data/dataset.h"
#include "wico/data/loader.h"
#include "wico/data/refer.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"
#include "wico/eval/model_eval.h"
#include "wico/nn/batch_norm.h"
#include "wico/nn/ris_model.h"
#include "wico/train/distributed.h"
#include "wico/train/optim.h"

namespace fs = std::filesystem;

namespace wico::train {

std::atomic<int>& stop_request() {
  static std::atomic<int> signal{0};
  return signal;
}

// A frozen batch norm nobody loaded is the identity (weight 1, bias 0, mean 0, variance 1), and a
// random ResNet with identity norms blows up with depth (measured on res5: activations of std
// 34.7 against about 1.2 with trained norms). Training such a trunk from scratch needs trainable
// norms; starting it frozen needs its published weights.
void require_loaded_frozen_norms(torch::nn::Module& model) {
  std::vector<std::string> identity;
  std::size_t frozen = 0;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const auto* norm = dynamic_cast<const backbones::FrozenBatchNorm2dImpl*>(item.value().get());
    if (!norm) continue;
    ++frozen;
    const bool untouched = norm->weight.eq(1).all().item<bool>() &&
                           norm->bias.eq(0).all().item<bool>() &&
                           norm->running_mean.eq(0).all().item<bool>() &&
                           norm->running_var.eq(1).all().item<bool>();
    if (untouched) identity.push_back(item.key());
  }
  if (frozen > 0 && identity.size() == frozen) {
    throw ConfigError(
        "every frozen batch norm of the model is the identity (" + identity.front() + " and " +
        std::to_string(frozen - 1) +
        " more): no weights were loaded into a trunk with frozen norms. Give its published "
        "weights (mask2former.backbone_pretrained, or train.init), or train it from scratch with "
        "trainable norms (mask2former.backbone_norm: batch)");
  }
}

namespace {

using Clock = std::chrono::steady_clock;

extern "C" void handle_stop_signal(int sig) {
  if (stop_request().exchange(sig) != 0) {
    // A second request: stop now, the way the signal would without us.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

// Installs the stop handlers for the lifetime of a run and restores the previous ones.
class SignalScope {
 public:
  SignalScope() {
    stop_request() = 0;
    previous_int_ = std::signal(SIGINT, handle_stop_signal);
    previous_term_ = std::signal(SIGTERM, handle_stop_signal);
  }
  ~SignalScope() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }

 private:
  void (*previous_int_)(int) = SIG_DFL;
  void (*previous_term_)(int) = SIG_DFL;
};

// Enables autocast for a region (train.amp): bf16 on CPU or CUDA, fp16 on CUDA.
class AutocastScope {
 public:
  AutocastScope(const std::string& mode, const c10::Device& device) {
    if (mode == "off") return;
    active_ = true;
    const at::ScalarType dtype = mode == "bf16" ? at::kBFloat16 : at::kHalf;
    cuda_ = device.is_cuda();
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(true);
    } else {
      at::autocast::set_autocast_cpu_dtype(dtype);
      at::autocast::set_cpu_enabled(true);
    }
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    if (cuda_) {
      at::autocast::set_enabled(false);
    } else {
      at::autocast::set_cpu_enabled(false);
    }
  }

 private:
  bool active_ = false, cuda_ = false;
};

double resident_megabytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / 1048576.0;
}

double metric_of(const eval::MetricSummary& s, const std::string& name) {
  if (name == "oiou") return s.oiou;
  if (name == "miou") return s.miou;
  for (std::size_t k = 0; k < eval::kPrecisionThresholds.size(); ++k) {
    if (name == fmt::format("prec@{:.1f}", eval::kPrecisionThresholds[k])) return s.precision[k];
  }
  throw ConfigError("train.val_metric '" + name + "' is not one of oiou, miou, prec@0.5..prec@0.9");
}

bool is_batch_norm(const torch::nn::Module& m) {
  return dynamic_cast<const nn::BatchNormImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm3dImpl*>(&m);
}

}  // namespace

struct Trainer::Impl {
  explicit Impl(Config c) : config(std::move(c)) {}
  Config config;
  fs::path run_dir;
  bool resume = false;
  Distributed* dist = nullptr;
  std::unique_ptr<Distributed> own_dist;
  std::function<void(std::int64_t)> step_callback;

  c10::Device device{c10::kCPU};
  std::unique_ptr<data::ReferDataset> refer;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<data::RefDataset> train_set;
  std::unique_ptr<data::Loader> loader;
  std::shared_ptr<nn::RisModel> model;
  OptimizerSetup optim;
  Schedule schedule;
  std::unique_ptr<CheckpointDir> checkpoints;
  std::unique_ptr<MetricsLog> metrics;
  TrainState state;

  std::int64_t total_steps = 0, steps_per_epoch = 0, accumulate = 1;
  bool epoch_based = false;

  bool main() const { return dist->is_main(); }

  void setup();
  void apply_module_modes();
  std::string checkpoint_now(const std::string& why);
  void validate();
  TrainResult loop();
};

Trainer::Trainer(Config config, fs::path run_dir, bool resume, Distributed* dist)
    : impl_(std::make_unique<Impl>(std::move(config))) {
  impl_->run_dir = std::move(run_dir);
  impl_->resume = resume;
  if (dist) {
    impl_->dist = dist;
  } else {
    impl_->own_dist = std::make_unique<Distributed>(DistributedEnv{}, c10::Device(c10::kCPU));
    impl_->dist = impl_->own_dist.get();
  }
}

Trainer::~Trainer() = default;

std::shared_ptr<nn::RisModel> Trainer::model() const { return impl_->model; }

void Trainer::on_step(std::function<void(std::int64_t)> callback) {
  impl_->step_callback = std::move(callback);
}

namespace {

// train.batch_norm: sync installs the all-ranks statistics for wico::nn::BatchNorm modules for the
// lifetime of a run.
class BatchNormSyncScope {
 public:
  BatchNormSyncScope(const Config& config, Distributed& dist) {
    if (config.text("train.batch_norm") != "sync" || dist.world_size() == 1) return;
    active_ = true;
    nn::set_batch_norm_sync([&dist](const at::Tensor& input, const at::Tensor& weight,
                                    const at::Tensor& bias, at::Tensor mean, at::Tensor var,
                                    double momentum, double eps) {
      return sync_batch_norm(input, weight, bias, std::move(mean), std::move(var), true, momentum,
                             eps, dist);
    });
  }
  ~BatchNormSyncScope() {
    if (active_) nn::set_batch_norm_sync({});
  }

 private:
  bool active_ = false;
};

}  // namespace

TrainResult Trainer::run() {
  SignalScope signals;
  BatchNormSyncScope sync(impl_->config, *impl_->dist);
  impl_->setup();
  return impl_->loop();
}

void Trainer::Impl::setup() {
  const Config& c = config;
  device = resolve_device(c.text("runtime.device"));
  if (c.text("train.amp") == "fp16" && !device.is_cuda()) {
    throw ConfigError("train.amp fp16 needs a CUDA device (runtime.device is " + device.str() +
                      "); use bf16 on the CPU");
  }
  epoch_based = c.integer("train.epochs") > 0;
  if (epoch_based == (c.integer("train.iterations") > 0)) {
    throw ConfigError("set exactly one of train.iterations and train.epochs (now " +
                      std::to_string(c.integer("train.iterations")) + " and " +
                      std::to_string(c.integer("train.epochs")) + ")");
  }
  accumulate = c.integer("train.accumulate");

  refer = std::make_unique<data::ReferDataset>(data::ReferDataset::load(
      c.text("data.root"), c.text("data.dataset"), c.text("data.split_by")));
  tokenizer = data::make_tokenizer_from_config(c, *refer);
  const bool instance_images = c.text("data.train_on") == "instance_images";
  train_set = std::make_unique<data::RefDataset>(
      *refer, c.text("data.train_split"),
      instance_images                         ? data::RefDataset::Mode::kInstanceImages
      : c.text("data.train_sentences") == "all" ? data::RefDataset::Mode::kTrainAll
                                                : data::RefDataset::Mode::kTrainSample,
      c.flag("data.exclude_eval_images"));
  if (instance_images) {
    spdlog::info("training on {} instance images ({})", train_set->size(), train_set->split());
  }
  if (c.text("data.augment") == "lsj") {
    const auto scale = c.reals("data.lsj_scale");
    if (scale.size() != 2) throw ConfigError("data.lsj_scale must be [min, max]");
    train_set->set_lsj(scale[0], scale[1]);
  }
  if (const auto words = c.integer("data.attribute_words"); words > 0 && !instance_images) {
    const std::string lexicon_file = c.text("data.attribute_lexicon");
    auto vocabulary = std::make_shared<data::AttributeVocabulary>(data::AttributeVocabulary::build(
        refer->refs(c.text("data.train_split")), static_cast<std::size_t>(words),
        lexicon_file.empty() ? data::default_attribute_lexicon()
                             : data::read_attribute_lexicon(lexicon_file)));
    std::string listed;
    for (const auto& w : vocabulary->words()) listed += (listed.empty() ? "" : " ") + w;
    spdlog::info("attribute vocabulary: {} of {} words ({})", vocabulary->size(), words, listed);
    train_set->set_attributes(std::move(vocabulary));
  }
  data::LoaderOptions lo = data::LoaderOptions::from_config(c);
  lo.shuffle = true;
  lo.drop_last = true;
  lo.rank = dist->rank();
  lo.world_size = dist->world_size();
  loader = std::make_unique<data::Loader>(*train_set, *tokenizer, lo);
  steps_per_epoch = loader->batches_per_epoch() / accumulate;
  if (steps_per_epoch < 1) {
    throw ConfigError("split '" + train_set->split() + "' has " +
                      std::to_string(train_set->size()) + " samples: not one step of " +
                      std::to_string(accumulate) + " x " + std::to_string(lo.batch_size) +
                      " per process (data.batch_size, train.accumulate)");
  }
  total_steps = epoch_based ? c.integer("train.epochs") * steps_per_epoch
                            : c.integer("train.iterations");
  schedule = Schedule::from_config(c, total_steps, steps_per_epoch);

  // Weights start from run.seed on every rank (rank 0's are broadcast anyway); after that each
  // rank draws its own dropout and sampling noise.
  const auto seed = static_cast<std::uint64_t>(c.integer("run.seed"));
  torch::manual_seed(seed);
  model = nn::build_model(c);
  checkpoints = std::make_unique<CheckpointDir>(run_dir / "checkpoints",
                                                static_cast<int>(c.integer("train.keep_last")));
  std::optional<Checkpoint> resumed;
  if (resume) {
    const auto latest = checkpoints->latest();
    if (!latest) throw Error("cannot resume '" + run_dir.string() + "': it has no checkpoint");
    resumed = Checkpoint::read(*latest);
    resumed->require_same_config(c);
  } else {
    // Published weights of components first (lavt.swin_pretrained...), then train.init over
    // them; an entry for the whole model replaces every weight, so the components' files are
    // not read at all.
    if (train::init_replaces_whole_model(config)) {
      spdlog::info("train.init loads the whole model: the components' published weights are not read");
    } else {
      io::load_pretrained_weights(*model);
    }
    train::load_initial_weights(*model, config);
  }
  model->to(device);
  optim = build_optimizer(*model, c);
  if (resumed) {
    resumed->load_model(*model);
    resumed->load_optimizer(*optim.optimizer);
    resumed->restore_rng();
    state = resumed->state();
    spdlog::info("resumed from {} (iteration {}, epoch {}, batch {})", resumed->path().string(),
                 state.iteration, state.epoch, state.batch_in_epoch);
  }
  if (c.text("train.batch_norm") == "sync" && dist->world_size() > 1) {
    for (const auto& item : model->named_modules("", /*include_self=*/false)) {
      if (is_batch_norm(*item.value()) && !dynamic_cast<nn::BatchNormImpl*>(item.value().get())) {
        throw ConfigError("train.batch_norm sync: '" + item.key() +
                          "' is LibTorch's batch norm, which cannot synchronise; the model must "
                          "use wico::nn::BatchNorm (or set train.batch_norm local or frozen)");
      }
    }
  }
  if (!resumed) require_loaded_frozen_norms(*model);
  dist->broadcast_parameters(*model);
  if (!resumed) torch::manual_seed(seed + static_cast<std::uint64_t>(dist->rank()));
  if (main()) {
    fs::create_directories(run_dir);
    metrics = std::make_unique<MetricsLog>(
        run_dir / "metrics.jsonl",
        resumed ? std::optional<std::int64_t>(state.iteration) : std::nullopt);
    checkpoints->remove_stale_temporaries();
    std::int64_t trainable = 0, frozen = 0;
    for (const auto& p : model->parameters()) (p.requires_grad() ? trainable : frozen) += p.numel();
    spdlog::info("model {}: {:.2f}M trainable parameters, {:.2f}M frozen; {} optimizer group(s)",
                 c.text("model.kind"), static_cast<double>(trainable) / 1e6,
                 static_cast<double>(frozen) / 1e6, optim.groups.size());
    for (const auto& g : optim.groups) {
      spdlog::debug("  group {}: lr {:.3g}, weight decay {:.3g}, {} tensors", g.name, g.base_lr,
                    g.weight_decay, g.parameters.size());
    }
    spdlog::info("{} steps ({} per epoch of {} samples; batch {} x {} accumulated x {} "
                 "process(es)) on {}",
                 total_steps, steps_per_epoch, train_set->size(), lo.batch_size, accumulate,
                 dist->world_size(), device.str());
  }
}

// Training mode for what trains; evaluation mode (dropout off, batch-norm statistics kept) for a
// module none of whose parameters trains (train.freeze, a 0 multiplier): a frozen part computes
// the same function at every step, as the frozen modules of the originals do.
void Trainer::Impl::apply_module_modes() {
  model->train();
  if (config.text("train.batch_norm") == "frozen") {
    for (const auto& m : model->modules(/*include_self=*/false)) {
      if (is_batch_norm(*m)) {
        m->eval();
        for (auto& p : m->parameters()) p.set_requires_grad(false);
      }
    }
  }
  if (config.text("train.frozen_modules") != "eval") return;
  for (const auto& m : model->modules(/*include_self=*/false)) {
    const auto parameters = m->parameters();
    if (!parameters.empty() &&
        std::none_of(parameters.begin(), parameters.end(), [](const at::Tensor& p) { return p.requires_grad(); })) {
      m->eval();
    }
  }
}

std::string Trainer::Impl::checkpoint_now(const std::string& why) {
  if (!main()) return {};
  const fs::path path = checkpoints->path_for(state.iteration);
  save_checkpoint(path, *model, optim.optimizer.get(), state, config);
  checkpoints->prune();
  spdlog::info("checkpoint {} ({})", path.string(), why);
  return path.string();
}

void Trainer::Impl::validate() {
  if (main()) {
    const std::string split = config.text("train.val_split");
    data::LoaderOptions lo = data::LoaderOptions::from_config(config);
    lo.device = device;
    const auto settings = eval::EvalSettings::from_config(config);
    const auto result = eval::evaluate_model(*model, *refer, split, *tokenizer, lo, settings);
    const auto& branch = result.result.branches.at(model->result_branch());
    const std::string metric_name = config.text("train.val_metric");
    const double value = metric_of(branch.summary, metric_name);
    nlohmann::json record = {{"iteration", state.iteration},
                             {"epoch", state.epoch},
                             {"val_split", split}};
    for (const auto& [name, b] : result.result.branches) {
      record["val"][name] = {{"miou", b.summary.miou}, {"oiou", b.summary.oiou}};
    }
    metrics->write(record);
    const bool best = value > state.best_metric;
    spdlog::info("validation on {} at step {}: {} {:.4f} (mIoU {:.4f}, oIoU {:.4f}){}", split,
                 state.iteration, metric_name, value, branch.summary.miou, branch.summary.oiou,
                 best ? ", best so far" : "");
    if (best) {
      state.best_metric = value;
      state.best_iteration = state.iteration;
      save_checkpoint(checkpoints->best(), *model, optim.optimizer.get(), state, config);
    }
  }
  dist->barrier();
  apply_module_modes();
}

TrainResult Trainer::Impl::loop() {
  const Config& c = config;
  const std::int64_t log_every = c.integer("train.log_every");
  const std::int64_t val_every = c.integer("train.val_every");
  const std::int64_t checkpoint_every = c.integer("train.checkpoint_every");
  const double clip = c.real("train.clip_grad_norm");
  const double clip_value = c.real("train.clip_grad_value");
  const bool skip_nonfinite = c.flag("train.skip_nonfinite");
  const std::string amp = c.text("train.amp");
  const std::int64_t micro_per_epoch = steps_per_epoch * accumulate;

  apply_module_modes();
  std::vector<at::Tensor> trainable;
  std::vector<std::pair<std::string, at::Tensor>> trainable_named;
  for (const auto& p : model->named_parameters()) {
    if (p.value().requires_grad()) {
      trainable.push_back(p.value());
      trainable_named.emplace_back(p.key(), p.value());
    }
  }
  TrainResult result;
  Progress::Options progress_options;
  progress_options.mode = main() ? ProgressMode::kAuto : ProgressMode::kOff;
  Progress progress("train", total_steps, progress_options);
  progress.advance(state.iteration);
  if (state.batch_in_epoch >= micro_per_epoch) {
    ++state.epoch;
    state.batch_in_epoch = 0;
  }
  loader->start_epoch(state.epoch, state.batch_in_epoch);

  std::map<std::string, double> loss_sums;
  std::int64_t logged_steps = 0, samples_since_log = 0, skipped_steps = 0;
  auto log_clock = Clock::now();
  // Where the time of the logging window went: waiting for data, forward + backward, the
  // gradient all-reduce, the optimiser step.
  std::map<std::string, double> seconds;
  std::string last_checkpoint;
  std::int64_t last_checkpoint_iteration = -1;

  while (state.iteration < total_steps) {
    share_cores_with_load();
    optim.optimizer->zero_grad();
    std::map<std::string, double> step_losses;
    std::vector<std::string> non_finite;
    double largest_input = 0;
    for (std::int64_t micro = 0; micro < accumulate; ++micro) {
      auto t = Clock::now();
      std::optional<data::Batch> host = loader->next();
      seconds["data"] += seconds_since(t);
      t = Clock::now();
      WICO_CHECK(host.has_value(), "the loader ran out of batches in epoch ", state.epoch);
      ++state.batch_in_epoch;
      const data::Batch batch = host->to(device);
      largest_input = std::max(largest_input, batch.images.abs().max().item<double>());
      samples_since_log += batch.size();
      nn::RisOutput out;
      try {
        AutocastScope autocast(amp, device);
        out = model->forward(batch, /*with_losses=*/true);
      } catch (const c10::Error& e) {
        if (amp == "off") throw;
        // LibTorch 1.13's CPU kernels do not all take bf16 activations with float weights
        // (layer_norm among them): say what to do instead of a bare dtype error.
        throw ConfigError(fmt::format(
            "train.amp {} failed in model {}: {} (with LibTorch {} some {} kernels do not accept "
            "reduced-precision activations; set train.amp: off)",
            amp, c.text("model.kind"), std::string(e.what_without_backtrace()), TORCH_VERSION,
            device.str()));
      }
      WICO_CHECK(!out.losses.empty(), "model ", c.text("model.kind"), " returned no losses");
      at::Tensor total;
      for (const auto& [name, loss] : out.losses) {
        const double value = loss.item<double>();
        if (!std::isfinite(value)) non_finite.push_back(fmt::format("{}={}", name, value));
        step_losses[name] += value / static_cast<double>(accumulate);
        total = total.defined() ? total + loss.to(at::kFloat) : loss.to(at::kFloat);
      }
      if (non_finite.empty()) (total / static_cast<double>(accumulate)).backward();
      seconds["compute"] += seconds_since(t);
    }
    // Gradients can overflow where the losses did not.
    bool bad = !non_finite.empty();
    if (!bad) {
      std::vector<std::string> names;
      for (const auto& [name, p] : trainable_named) {
        if (p.grad().defined() && !p.grad().isfinite().all().item<bool>()) names.push_back(name);
      }
      if (!names.empty()) {
        bad = true;
        non_finite.push_back(
            "gradient of " + names.front() +
            (names.size() > 1 ? fmt::format(" and {} more (last: {})", names.size() - 1,
                                            names.back())
                              : std::string()));
      }
    }
    bad = dist->any(bad);
    if (bad) {
      std::string parts;
      for (const auto& n : non_finite) parts += (parts.empty() ? "" : ", ") + n;
      if (parts.empty()) parts = "on another process";
      if (!skip_nonfinite) {
        throw Error(fmt::format("non-finite values at step {} (epoch {}): {}; no checkpoint is "
                                "written from this state (train.skip_nonfinite: true skips such "
                                "steps)", state.iteration + 1, state.epoch, parts));
      }
      spdlog::warn("step {}: non-finite {}; step skipped (largest |input| {:.3g})",
                   state.iteration + 1, parts, largest_input);
      optim.optimizer->zero_grad();
      ++skipped_steps;
    } else {
      auto t = Clock::now();
      dist->average_gradients(trainable);
      seconds["allreduce"] += seconds_since(t);
      t = Clock::now();
      if (clip > 0) torch::nn::utils::clip_grad_norm_(trainable, clip);
      if (clip_value > 0) torch::nn::utils::clip_grad_value_(trainable, clip_value);
      set_learning_rates(*optim.optimizer, optim.groups, schedule.factor(state.iteration),
                         schedule.multipliers_apply(state.iteration));
      optim.optimizer->step();
      seconds["optimizer"] += seconds_since(t);
    }
    ++state.iteration;
    if (state.batch_in_epoch >= micro_per_epoch) {
      ++state.epoch;
      state.batch_in_epoch = 0;
      if (state.iteration < total_steps) loader->start_epoch(state.epoch);
    }
    for (const auto& [name, v] : step_losses) loss_sums[name] += v;
    ++logged_steps;
    progress.advance();

    double loss_total = 0;
    for (const auto& [name, v] : step_losses) loss_total += v;
    progress.set_postfix(fmt::format("loss={:.4f} lr={:.2e}", loss_total,
                                     learning_rate(*optim.optimizer, 0)));
    if (main() && (state.iteration % log_every == 0 || state.iteration == total_steps)) {
      const double elapsed = seconds_since(log_clock);
      nlohmann::json record = {{"iteration", state.iteration},
                               {"epoch", state.epoch},
                               {"lr", learning_rate(*optim.optimizer, 0)},
                               {"samples_per_s", static_cast<double>(samples_since_log) *
                                                     dist->world_size() / std::max(elapsed, 1e-9)},
                               {"rss_mb", resident_megabytes()}};
      double sum = 0;
      for (const auto& [name, v] : loss_sums) {
        record["losses"][name] = v / static_cast<double>(logged_steps);
        sum += v / static_cast<double>(logged_steps);
      }
      record["loss"] = sum;
      record["seconds"] = seconds;
      if (skipped_steps) record["skipped_steps"] = skipped_steps;
      metrics->write(record);
      spdlog::debug("step {}: loss {:.4f}", state.iteration, sum);
      loss_sums.clear();
      logged_steps = samples_since_log = 0;
      seconds.clear();
      log_clock = Clock::now();
    }
    if (step_callback) step_callback(state.iteration);

    const int signal = dist->any(stop_request() != 0) ? std::max(stop_request().load(), 1) : 0;
    if (signal) {
      progress.finish();
      spdlog::warn("stop requested ({}): writing a checkpoint at step {}",
                   signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal",
                   state.iteration);
      result.last_checkpoint = checkpoint_now("interrupted");
      result.stopped_by_signal = signal;
      result.state = state;
      return result;
    }
    const bool epoch_end = state.batch_in_epoch == 0;
    const bool periodic_checkpoint = checkpoint_every > 0
                                         ? state.iteration % checkpoint_every == 0
                                         : epoch_based && epoch_end;
    const bool periodic_val = val_every > 0 ? state.iteration % val_every == 0
                                            : epoch_based && epoch_end;
    if (periodic_val && state.iteration < total_steps) validate();
    if (periodic_checkpoint && state.iteration < total_steps) {
      last_checkpoint = checkpoint_now("periodic");
      last_checkpoint_iteration = state.iteration;
    }
  }
  progress.finish();
  if (val_every >= 0 && !c.text("train.val_split").empty()) validate();
  if (last_checkpoint_iteration != state.iteration) last_checkpoint = checkpoint_now("final");
  result.last_checkpoint = last_checkpoint;
  result.state = state;
  result.best_metric = state.best_metric;
  return result;
}

}  // namespace wico::train
