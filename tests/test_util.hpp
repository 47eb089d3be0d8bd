// Helpers shared by the tests: fresh random data and a central-difference gradient checker.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <functional>
#include <random>
#include <span>
#include <vector>

namespace mg::test {

// Sets or unsets environment variables and restores them (and the working directory) after.
class EnvGuard {
 public:
  EnvGuard() = default;
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  ~EnvGuard() { restore(); }
  void restore() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) {
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        ::unsetenv(it->first.c_str());
      }
    }
    saved_.clear();
    if (!cwd_.empty()) std::filesystem::current_path(cwd_);
    cwd_.clear();
  }
  void set(const std::string& name, const std::optional<std::string>& value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value) {
      ::setenv(name.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  void chdir(const std::filesystem::path& dir) {
    if (cwd_.empty()) cwd_ = std::filesystem::current_path();
    std::filesystem::current_path(dir);
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
  std::filesystem::path cwd_;
};


inline std::vector<double> random_vector(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Fresh random floats in [lo, hi): the doubles of random_vector, rounded.
inline std::vector<float> random_floats(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const std::vector<double> d = random_vector(static_cast<size_t>(n), seed, lo, hi);
  return std::vector<float>(d.begin(), d.end());
}

// Central differences in double: h = 1e-5 leaves a truncation error of order h^2 and a rounding
// error of order 1e-16 / h, both near 1e-10, so 1e-6 relative (plus 1e-8 absolute, for gradients
// that are zero) catches a wrong index or a missing term without flaking.
struct FdTolerance {
  double h = 1e-5;
  double rtol = 1e-6;
  double atol = 1e-8;
};

// Compares analytic[i] with d loss / d x[i] for each i in which (all when empty). loss() must read x.
inline void expect_gradient(const char* what, std::span<double> x, std::span<const double> analytic,
                            const std::function<double()>& loss, std::vector<int64_t> which = {},
                            FdTolerance tol = {}) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  if (which.empty()) {
    which.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) which[i] = static_cast<int64_t>(i);
  }
  int failures = 0;
  for (const int64_t i : which) {
    const double saved = x[i];
    x[i] = saved + tol.h;
    const double up = loss();
    x[i] = saved - tol.h;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2 * tol.h);
    const double a = analytic[i];
    const double bound = tol.atol + tol.rtol * std::max(std::abs(a), std::abs(numeric));
    if (std::abs(a - numeric) > bound && ++failures <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: analytic " << a << " vs numeric " << numeric
                    << " (|diff| " << std::abs(a - numeric) << " > " << bound << ")";
    }
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " of " << which.size() << " elements differ";
}

// sum(r * y): a random projection makes every output element matter to the scalar loss.
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace mg::test
