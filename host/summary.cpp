#include "host/summary.hpp"

#include <ostream>

#include "host/report.hpp"

namespace mg {

void run_summary(const std::string& model, std::ostream& out) {
  out << model_summary(Graph::build(ModelSpec::parse(model)));
}

}  // namespace mg
