// A tiny work-sharing thread pool for the W4A16 CPU kernels.
//
// Why not at::parallel_for: an OpenMP region ends at a barrier that waits for every thread to arrive, so on
// a shared or oversubscribed machine one descheduled thread stalls the whole call for a scheduler tick
// (4-8 ms, longer than a decode step's matmuls). Here the caller works too and waits only for chunks to be
// finished, never for threads to show up: a worker that wakes late finds nothing left and goes back to wait.
#pragma once

#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace swarmkeep {

class WorkPool {
 public:
  static WorkPool& instance() {
    static WorkPool pool;
    return pool;
  }

  // Runs fn(chunk) for chunk in [0, chunks) on up to `threads` threads (the caller included); returns when
  // every chunk is done. Chunks are claimed one at a time, so uneven chunks and late threads balance out.
  void run(int64_t chunks, int threads, const std::function<void(int64_t)>& fn,
           const std::function<void()>& thread_begin = {}, const std::function<void()>& thread_end = {}) {
    if (chunks <= 0) return;
    if (threads <= 1 || chunks == 1) {
      if (thread_begin) thread_begin();
      for (int64_t c = 0; c < chunks; ++c) fn(c);
      if (thread_end) thread_end();
      return;
    }
    std::lock_guard<std::mutex> serial(run_mutex_);  // one job at a time; callers from other threads queue
    ensure_workers(threads - 1);
    fn_ = &fn;
    begin_ = &thread_begin;
    end_ = &thread_end;
    done_.store(0, std::memory_order_relaxed);
    const uint64_t gen = (generation_ + 1) & kGenMask;
    generation_ = gen;
    active_workers_.store(threads - 1, std::memory_order_relaxed);
    state_.store(pack(gen, static_cast<uint64_t>(chunks), 0), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
    }
    wake_.notify_all();
    work(gen);
    while (done_.load(std::memory_order_acquire) < chunks) _mm_pause();
    // Workers may still be inside thread_end for this job; wait so its closures outlive them.
    while (busy_.load(std::memory_order_acquire) != 0) _mm_pause();
  }

 private:
  static constexpr int kGenBits = 20, kCountBits = 22;
  static constexpr uint64_t kGenMask = (1ull << kGenBits) - 1, kCountMask = (1ull << kCountBits) - 1;
  static uint64_t pack(uint64_t gen, uint64_t n, uint64_t next) {
    return (gen << (2 * kCountBits)) | (n << kCountBits) | next;
  }

  WorkPool() = default;
  ~WorkPool() {
    stop_.store(true);
    wake_.notify_all();
    for (auto& t : workers_) t.detach();  // the process is exiting; workers hold no resources
  }

  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { worker_loop(index); });
    }
  }

  // Claims and runs chunks of job `gen` until none are left; returns whether it ran any.
  bool work(uint64_t gen) {
    bool began = false;
    while (true) {
      uint64_t s = state_.load(std::memory_order_acquire);
      const uint64_t sgen = s >> (2 * kCountBits), n = (s >> kCountBits) & kCountMask, next = s & kCountMask;
      if (sgen != gen || next >= n) break;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
      if (!began) {
        began = true;
        busy_.fetch_add(1, std::memory_order_acq_rel);
        if (*begin_) (*begin_)();
      }
      (*fn_)(static_cast<int64_t>(next));
      done_.fetch_add(1, std::memory_order_release);
    }
    if (began) {
      if (*end_) (*end_)();
      busy_.fetch_sub(1, std::memory_order_acq_rel);
    }
    return began;
  }

  void worker_loop(int index) {
    uint64_t seen = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      // Spin briefly after a job (decode issues many back to back), then sleep so idle cores stay free.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(2000);
      uint64_t gen = seen;
      while (true) {
        gen = state_.load(std::memory_order_acquire) >> (2 * kCountBits);
        if (gen != seen || stop_.load(std::memory_order_relaxed)) break;
        if (std::chrono::steady_clock::now() > spin_until) {
          std::unique_lock<std::mutex> lock(sleep_mutex_);
          wake_.wait_for(lock, std::chrono::milliseconds(100), [&] {
            return (state_.load(std::memory_order_acquire) >> (2 * kCountBits)) != seen ||
                   stop_.load(std::memory_order_relaxed);
          });
        }
        _mm_pause();
      }
      seen = gen;
      // A job that asked for fewer threads than the pool holds leaves the extra workers out.
      if (index < active_workers_.load(std::memory_order_relaxed)) work(gen);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_, sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> state_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> busy_{0};
  std::atomic<bool> stop_{false};
  uint64_t generation_ = 0;
  std::atomic<int> active_workers_{0};
  const std::function<void(int64_t)>* fn_ = nullptr;
  const std::function<void()>* begin_ = nullptr;
  const std::function<void()>* end_ = nullptr;
};

}  // namespace swarmkeep
