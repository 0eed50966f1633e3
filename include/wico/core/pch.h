// Precompiled header of the library (CMake target_precompile_headers): the LibTorch and standard
// headers most translation units include. Sources still include what they use.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>
