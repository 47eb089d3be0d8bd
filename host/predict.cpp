#include "host/predict.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "host/digit_image.hpp"

namespace mg {

namespace fs = std::filesystem;

void run_predict(const PredictOptions& o, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(o.checkpoint);
  const Graph graph = Graph::build(ModelSpec::parse(ckpt.meta.spec));
  if (!(graph.input() == Shape{1, 28, 28})) {
    throw std::invalid_argument(o.checkpoint.string() + ": predict needs a model of 28x28 images");
  }
  // Decode everything first: one bad image fails the command before any output.
  std::vector<uint8_t> images;
  for (const fs::path& p : o.images) {
    const MnistImage img = load_digit_image(p);
    images.insert(images.end(), img.begin(), img.end());
  }
  const auto n = static_cast<int64_t>(o.images.size());
  const std::vector<uint8_t> labels(static_cast<size_t>(n), 0);
  EngineOptions eo;
  eo.batch_size = std::min<int64_t>(n, 256);
  auto engine = build_engine(o.device, graph, eo, std::cerr);
  engine->set_parameters(ckpt.state.params);
  engine->set_dataset({images.data(), labels.data(), n, graph.input()});
  std::vector<int32_t> order(static_cast<size_t>(n));
  for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) order[static_cast<size_t>(i)] = i;
  std::vector<float> probs;
  engine->evaluate(order, &probs);

  std::vector<std::string> names = ckpt.meta.class_names;
  const int classes = graph.classes();
  if (static_cast<int>(names.size()) != classes) {
    names.clear();
    for (int c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  }
  nlohmann::json results = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    const float* p = probs.data() + i * classes;
    const int best = static_cast<int>(std::max_element(p, p + classes) - p);
    if (o.json) {
      results.push_back({{"image", o.images[static_cast<size_t>(i)].string()},
                         {"class", best},
                         {"label", names[static_cast<size_t>(best)]},
                         {"probabilities", std::vector<float>(p, p + classes)}});
      continue;
    }
    char head[64];
    std::snprintf(head, sizeof head, " (p=%.4f)\n ", static_cast<double>(p[best]));
    out << o.images[static_cast<size_t>(i)].string() << ": " << names[static_cast<size_t>(best)]
        << head;
    for (int c = 0; c < classes; ++c) {
      char cell[48];
      std::snprintf(cell, sizeof cell, " %s:%.4f", names[static_cast<size_t>(c)].c_str(),
                    static_cast<double>(p[c]));
      out << cell;
    }
    out << '\n';
  }
  if (o.json) out << results.dump(2) << '\n';
}

}  // namespace mg
