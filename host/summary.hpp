// mnist_gpu summary: Keras' model.summary() of a model spec.
#pragma once

#include <iosfwd>
#include <string>

namespace mg {

void run_summary(const std::string& model, std::ostream& out);

}  // namespace mg
