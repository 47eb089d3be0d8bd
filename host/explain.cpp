#include "host/explain.hpp"

#include <algorithm>
#include <iostream>
#include <string>

#include "host/atomic_file.hpp"
#include "host/charts.hpp"
#include "host/digit_image.hpp"
#include "host/report_inside.hpp"

namespace mg {

namespace fs = std::filesystem;

void run_explain(const ExplainOptions& o, std::ostream& out) {
  if (o.images.empty()) throw std::invalid_argument("explain needs at least one image");
  if (o.images.size() > 64)
    throw std::invalid_argument("explain takes at most 64 images at a time");
  const Checkpoint ckpt = load_checkpoint(o.checkpoint);
  const Graph graph = Graph::build(ModelSpec::parse(ckpt.meta.spec));
  if (!(graph.input() == Shape{1, 28, 28})) {
    throw std::invalid_argument(o.checkpoint.string() + ": explain needs a model of 28x28 images");
  }
  // Decode everything first: one bad image fails the command before any output.
  std::vector<MnistImage> decoded;
  for (const fs::path& p : o.images) decoded.push_back(load_digit_image(p));
  EngineOptions eo;
  eo.batch_size = static_cast<int64_t>(decoded.size());
  auto engine = build_engine(o.device, graph, eo, std::cerr);
  engine->set_parameters(ckpt.state.params);
  std::vector<InsideDigit> digits;
  for (size_t i = 0; i < decoded.size(); ++i) {
    digits.push_back({decoded[i], o.images[i].filename().string(), -1});
  }
  const InsidePictures pics = inside_pictures(*engine, digits, ckpt.meta.class_names);

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mnist_gpu "
      "explain</title>"
      "<style>body{font-family:sans-serif;margin:24px;color:#222}figure{margin:16px 0}"
      "img{max-width:100%}</style></head><body>\n<h1>Inside the network</h1>\n<p>Checkpoint "
      "<code>" +
      xml_escape(o.checkpoint.string()) + "</code>, model <code>" + xml_escape(ckpt.meta.spec) +
      "</code>, on " + xml_escape(engine->device_name()) + ".</p>\n<ul>\n";
  for (size_t i = 0; i < digits.size(); ++i) {
    const int p = pics.predicted[i];
    const std::string name = p < static_cast<int>(ckpt.meta.class_names.size())
                                 ? ckpt.meta.class_names[static_cast<size_t>(p)]
                                 : std::to_string(p);
    html += "<li><code>" + xml_escape(o.images[i].string()) + "</code>: predicted " +
            xml_escape(name) + "</li>\n";
  }
  html += "</ul>\n";
  for (const InsideSvg& f : pics.files) {
    html += "<figure><img src=\"" + f.name + "\" alt=\"" + xml_escape(f.title) + "\"><figcaption>" +
            xml_escape(f.title) + "</figcaption></figure>\n";
  }
  html += "</body></html>\n";

  const fs::path dir = make_run_dir(o.out, "explain-");
  for (const InsideSvg& f : pics.files) write_file_atomic(dir / f.name, f.svg);
  write_file_atomic(dir / "explain.html", html);
  for (size_t i = 0; i < digits.size(); ++i) {
    out << o.images[i].string() << ": predicted " << pics.predicted[i] << '\n';
  }
  out << "report: " << (dir / "explain.html").string() << '\n';
}

}  // namespace mg
