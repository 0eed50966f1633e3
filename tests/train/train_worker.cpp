// wico_train_worker DATA RUN BATCH ITERATIONS [BATCH_NORM]: one rank of a data-parallel run of the
// test model (TinyRisModel without dropout; train.batch_norm frozen unless given), started by
// launch_local_workers. Every rank
// writes its final parameters to RUN/rank<R>.pt so the test can compare the ranks.
#include <cstdio>
#include <string>

#include "train/tiny_model.h"
#include "wico/core/logging.h"
#include "wico/core/progress.h"
#include "wico/train/checkpoint.h"
#include "wico/train/distributed.h"
#include "wico/train/trainer.h"

using namespace wico;

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: wico_train_worker DATA RUN BATCH ITERATIONS [BATCH_NORM]\n");
    return 2;
  }
  try {
    init_logging("warn");
    set_default_progress_mode(ProgressMode::kOff);
    test::TinyRisModel::dropout_p = 0.0;
    test::register_tiny_test_model();
    const Config config = Config::defaults(
        {"model.kind=test_tiny", std::string("data.root=") + argv[1], "data.input_size=48",
         std::string("data.batch_size=") + argv[3], "data.workers=1", "runtime.device=cpu",
         "runtime.threads=1", std::string("train.iterations=") + argv[4], "train.lr=0.01",
         "train.optimizer=adam", "train.val_every=-1",
         // A large epsilon keeps Adam from turning noise-level gradients (the conv biases
         // before batch norm have none in theory) into full-size steps of random sign.
         "train.eps=1e-3",
         std::string("train.batch_norm=") + (argc == 6 ? argv[5] : "frozen"),
         "log.progress=off"});
    train::Distributed dist(train::DistributedEnv::from_environment(), c10::Device(c10::kCPU));
    train::Trainer trainer(config, argv[2], false, &dist);
    trainer.run();
    train::save_checkpoint(std::string(argv[2]) + "/rank" + std::to_string(dist.rank()) + ".pt",
                           *trainer.model(), nullptr, {}, config);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wico_train_worker: %s\n", e.what());
    return 1;
  }
}
