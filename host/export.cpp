#include "host/export.hpp"

#include <ostream>

#include "host/atomic_file.hpp"
#include "host/checkpoint.hpp"
#include "host/onnx_export.hpp"

namespace mg {

void run_export(const ExportOptions& o, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(o.checkpoint);
  const Graph graph = Graph::build(ModelSpec::parse(ckpt.meta.spec), ckpt.meta.input,
                                   ckpt.meta.classes);
  std::error_code ec;
  if (!o.force && std::filesystem::exists(o.onnx, ec)) {
    throw FileError(o.onnx.string() + ": already exists; add --force to replace it");
  }
  write_onnx_model(o.onnx, graph, ckpt.state.params,
                   {ckpt.meta.dataset, ckpt.meta.class_names, ckpt.meta.epochs_done});
  const Shape in = graph.input();
  out << "onnx: " << o.onnx.string() << " (opset " << kOnnxOpset << "; input [N," << in.c << ','
      << in.h << ',' << in.w << "] float32 in [0,1], output probabilities [N," << graph.classes()
      << "])\n";
}

}  // namespace mg
