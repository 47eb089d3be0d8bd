// What a training run writes: the Keras-style model summary, history.csv, metrics.json, SVG charts
// and one self-contained report.html that shows them all. See docs/report.md for each file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/graph.hpp"

namespace mg {

// Keras' model.summary() text for a Sequential model: "Layer (type) | Output Shape | Param #",
// output shapes channels-last as Keras prints them, e.g.
//   conv2d (Conv2D)               (None, 28, 28, 32)        320
// then "Total params: 421,642", "Trainable params: ..." and "Non-trainable params: 0".
std::string model_summary(const Graph& graph);

struct SummaryRow {
  std::string layer;                  // "conv2d (Conv2D)"
  std::vector<int64_t> output_shape;  // without the batch dimension, channels last: {28, 28, 32}
  int64_t params = 0;
};
std::vector<SummaryRow> model_summary_rows(const Graph& graph);
std::string keras_shape(const std::vector<int64_t>& shape);  // {28, 28, 32} -> "(None, 28, 28, 32)"

// One line of Keras' History; epoch is 0-based, as CSVLogger writes it (charts show epoch + 1).
struct EpochRecord {
  int epoch = 0;
  double loss = 0, accuracy = 0, val_loss = 0, val_accuracy = 0;
  double seconds = 0;  // training time of the epoch, without validation
  double lr = 0;       // Adam's learning rate during the epoch (0: not recorded)
  // The L2 penalty's share of loss and val_loss (--l2; 0 without it): the data loss is the
  // difference.
  double l2_loss = 0, val_l2_loss = 0;
};

struct RunReport {
  std::string title = "MNIST CNN training run";
  std::string dataset, device, spec;
  std::string precision = "fp32";        // the GEMMs' arithmetic: "fp32" or "tf32"
  std::vector<std::string> class_names;  // empty: "0", "1", ... for graph->classes()
  const Graph* graph = nullptr;          // required
  // The whole combined dataset (rows * cols bytes per image, 0 = background); train, val and test
  // index into it.
  int rows = 28, cols = 28;
  const uint8_t* images = nullptr;
  const uint8_t* labels = nullptr;
  std::span<const int32_t> train, val, test;
  std::vector<EpochRecord> history;
  Metrics test_metrics;
  std::vector<float> test_probs;  // softmax, [test.size(), classes], in test's order
  double train_seconds = 0;       // all epochs, training only
  double eval_seconds = 0;        // validation after every epoch plus the final test pass
  double load_seconds = 0;        // reading the dataset
  int64_t batch_size = 0;
  double lr = 0;
  double weight_decay = 0;  // AdamW's (--weight-decay)
  double l2 = 0;            // the kernel regularizer's factor (--l2); > 0 adds the l2 columns
  // The schedule and early stopping, in words ("cosine schedule; stopped early after epoch 9 ...");
  // empty: a constant rate, every epoch run.
  std::string training_note;
  uint64_t seed = 0;
  // The engine holding the run's final weights: when set, the report also shows the network's
  // inside (filters, feature maps, saliency; see report_inside.hpp) in inside_*.svg files.
  Engine* engine = nullptr;
};

// Per-class scores as sklearn's classification_report computes them; a class never predicted has
// precision 0, one never present recall 0 (sklearn's zero_division=0), F1 0 when both are 0.
struct ClassMetrics {
  double precision = 0, recall = 0, f1 = 0;
  int64_t support = 0;  // test images whose true label is the class
};

// cm[true][predicted], predicted = argmax of each row of probs (the first on ties). Throws
// std::invalid_argument when probs.size() != labels.size() * classes or a label is >= classes.
std::vector<std::vector<int64_t>> confusion_matrix(std::span<const uint8_t> labels_of_test,
                                                   std::span<const float> probs, int classes);
std::vector<ClassMetrics> per_class_metrics(const std::vector<std::vector<int64_t>>& cm);
ClassMetrics macro_average(const std::vector<ClassMetrics>& per_class);     // plain mean
ClassMetrics weighted_average(const std::vector<ClassMetrics>& per_class);  // support-weighted
// sklearn's classification_report text (precision, recall, f1-score, support; accuracy, macro
// avg, weighted avg), for printing after a run.
std::string classification_report(const std::vector<std::vector<int64_t>>& cm,
                                  const std::vector<std::string>& class_names);

// Writes into dir (which must exist): model_summary.txt, history.csv, metrics.json,
// class_distribution.svg, samples.svg, curves.svg, confusion_matrix.svg,
// confusion_matrix_normalized.svg, misclassified.svg and report.html. Each file goes to a
// temporary name first and is renamed into place, so a reader never sees half a file. Throws
// std::invalid_argument for inconsistent input and std::runtime_error naming the file on I/O
// failure.
void write_report(const std::filesystem::path& dir, const RunReport& report);

// history.csv's text: Keras' CSVLogger file (epoch, accuracy, loss, lr, val_accuracy, val_loss;
// with l2 > 0 also l2_loss and val_l2_loss).
std::string history_csv_text(const std::vector<EpochRecord>& history, double l2);

// The files write_report always writes, in the order above (with RunReport.engine set, also the
// inside_*.svg files).
const std::vector<std::string>& report_files();

}  // namespace mg
