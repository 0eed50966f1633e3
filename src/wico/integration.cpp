#include "wico/wico/integration.h"

#include <ATen/ATen.h>

#include "wico/core/error.h"

namespace wico::model {

Integration parse_integration(const std::string& name) {
  if (name == "intersection") return Integration::kIntersection;
  if (name == "union") return Integration::kUnion;
  if (name == "average") return Integration::kAverage;
  if (name == "si") return Integration::kScore;
  if (name == "gsi") return Integration::kGaussianScore;
  throw ConfigError("wico.integration '" + name +
                    "' is not one of intersection, union, average, si, gsi");
}

std::string integration_name(Integration integration) {
  switch (integration) {
    case Integration::kIntersection: return "intersection";
    case Integration::kUnion: return "union";
    case Integration::kAverage: return "average";
    case Integration::kScore: return "si";
    case Integration::kGaussianScore: return "gsi";
  }
  return "";
}

at::Tensor combine_fixed(Integration integration, const at::Tensor& a, const at::Tensor& b) {
  switch (integration) {
    case Integration::kIntersection: return at::minimum(a, b);
    case Integration::kUnion: return at::maximum(a, b);
    case Integration::kAverage: return (a + b) / 2;
    default: break;
  }
  throw Error("combine_fixed: " + integration_name(integration) + " is not a fixed rule");
}

}  // namespace wico::model
