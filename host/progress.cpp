#include "host/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <ostream>

namespace mg {

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

std::string format_metric_pair(const char* prefix, const Metrics& m) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%sloss: %.4f - %saccuracy: %.4f", prefix, m.loss, prefix, m.accuracy);
  return buf;
}

EpochProgress::EpochProgress(std::ostream& out, bool live, std::function<Metrics()> running)
    : out_(out), live_(live), running_(std::move(running)), start_(std::chrono::steady_clock::now()) {}

void EpochProgress::step(int64_t done, int64_t total) {
  if (!live_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_draw_ < std::chrono::milliseconds(250)) return;
  last_draw_ = now;
  const double s = std::chrono::duration<double>(now - start_).count();
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / total);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, '.');
  char line[160];
  std::snprintf(line, sizeof line, "\r%lld/%lld [%s] - %.0fs %.0fms/step - ", static_cast<long long>(done),
                static_cast<long long>(total), bar.c_str(), s, 1e3 * s / static_cast<double>(done));
  out_ << line << format_metric_pair("", running_()) << std::flush;
}

std::string EpochProgress::finish(int64_t total, double seconds, const Metrics& train,
                                  const Metrics& val) const {
  char head[96];
  std::snprintf(head, sizeof head, "%lld/%lld - %.2fs - %.1fms/step - ", static_cast<long long>(total),
                static_cast<long long>(total), seconds, 1e3 * seconds / static_cast<double>(total));
  return std::string(live_ ? "\r\x1b[K" : "") + head + format_metric_pair("", train) + " - " +
         format_metric_pair("val_", val);
}

}  // namespace mg
