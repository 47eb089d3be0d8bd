#include "host/interrupt.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>

namespace mg {
namespace {

// Only these are touched by the handler: lock-free, async-signal-safe.
volatile std::sig_atomic_t g_first = 0;     // the first signal, 0 before it
volatile std::sig_atomic_t g_deferring = 0;  // DeferExit scopes alive
volatile std::sig_atomic_t g_pending = 0;    // a second signal that came while deferring
volatile std::sig_atomic_t g_write_fd = -1;  // the pipe that wakes wait_for_interrupt()

std::mutex g_mutex;  // guards the rest, which ordinary threads use
int g_scopes = 0;
int g_pipe[2] = {-1, -1};
struct sigaction g_old_int {}, g_old_term {};

void handle(int signo) {
  const int saved = errno;
  if (g_first == 0) {
    g_first = signo;
  } else if (g_deferring > 0) {
    g_pending = signo;
  } else {
    ::_exit(128 + signo);
  }
  const auto byte = static_cast<unsigned char>(signo);
  if (g_write_fd >= 0) [[maybe_unused]] const ssize_t ignored = ::write(g_write_fd, &byte, 1);
  errno = saved;
}

}  // namespace

InterruptScope::InterruptScope() {
  std::lock_guard lock(g_mutex);
  if (g_scopes++ > 0) return;
  if (::pipe(g_pipe) != 0) {
    --g_scopes;
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  g_first = 0;
  g_pending = 0;
  g_write_fd = g_pipe[1];
  struct sigaction sa {};
  sa.sa_handler = &handle;
  sigemptyset(&sa.sa_mask);
  // One handler at a time: a SIGTERM during the SIGINT handler waits for it.
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptScope::~InterruptScope() {
  std::lock_guard lock(g_mutex);
  if (--g_scopes > 0) return;
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
  g_write_fd = -1;
  ::close(g_pipe[0]);
  ::close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
}

int interrupt_signal() { return g_first; }

int wait_for_interrupt() {
  int fd = -1;
  {
    std::lock_guard lock(g_mutex);
    if (g_scopes == 0) throw std::logic_error("wait_for_interrupt() outside an InterruptScope");
    fd = g_pipe[0];
  }
  while (g_first == 0) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) {
      throw std::runtime_error(std::string("poll on the signal pipe: ") + std::strerror(errno));
    }
    unsigned char byte = 0;
    if (p.revents & POLLIN) [[maybe_unused]] const ssize_t got = ::read(fd, &byte, 1);
  }
  return g_first;
}

const char* signal_name(int signo) {
  return signo == SIGTERM ? "SIGTERM" : signo == SIGINT ? "SIGINT" : "a signal";
}

DeferExit::DeferExit() { g_deferring = g_deferring + 1; }

DeferExit::~DeferExit() {
  g_deferring = g_deferring - 1;
  if (g_deferring == 0 && g_pending != 0) {
    std::cout.flush();
    ::_exit(128 + g_pending);
  }
}

}  // namespace mg
