// Disk tier I/O (see disk_io.h): aligned direct I/O, a bounded pool of threads per disk path,
// chunked checksums, temporary name + rename. No torch headers.
#include "disk_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "api.h"

namespace mmoc::diskio {
namespace {

constexpr uint64_t kMagic = 0x6d6d6f6373746174ull;  // "mmocstat"
constexpr uint64_t kVersion = 2;                    // 2: 4096-byte header, chunked checksum
constexpr uint64_t kFnvBasis = 1469598103934665603ull, kFnvPrime = 1099511628211ull;

size_t alignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
std::string err() { return std::strerror(errno); }

struct AlignedBuf {
  void* p = nullptr;
  size_t cap = 0;
  AlignedBuf() = default;
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  ~AlignedBuf() { std::free(p); }
  uint8_t* get(size_t n) {
    if (n > cap) {
      std::free(p), p = nullptr, cap = 0;
      const int rc = posix_memalign(&p, kAlign, n);
      MMOC_CHECK(rc == 0, "disk tier: cannot allocate a " << n << "-byte aligned staging buffer: " << std::strerror(rc));
      cap = n;
    }
    return static_cast<uint8_t*>(p);
  }
};

/** 64-bit FNV-1a-style hash of one chunk: 8-byte words in 4 interleaved lanes, the tail bytes, the length. */
uint64_t chunkHash(const uint8_t* p, size_t n) {
  uint64_t l[4] = {kFnvBasis, kFnvBasis ^ 1, kFnvBasis ^ 2, kFnvBasis ^ 3};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    for (int k = 0; k < 4; ++k) l[k] = (l[k] ^ w[k]) * kFnvPrime;
  }
  uint64_t h = kFnvBasis;
  for (int k = 0; k < 4; ++k) h = (h ^ l[k]) * kFnvPrime;
  for (; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return (h ^ n) * kFnvPrime;
}
uint64_t combine(const std::vector<uint64_t>& sums) {
  uint64_t h = kFnvBasis;
  for (uint64_t s : sums)
    for (int b = 0; b < 8; ++b) h = (h ^ ((s >> (8 * b)) & 0xff)) * kFnvPrime;
  return h;
}

/** A fixed pool of threads for one disk path; each thread owns an aligned bounce buffer. */
class PathPool {
 public:
  explicit PathPool(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::atomic<bool> refusedDirect{false};  // O_DIRECT refused here once: buffered from then on
  std::atomic<bool> warned{false};

  /** Runs `tasks` copies of `fn` on the pool (at most its size at once) and waits for all. */
  void runAll(int threads, int tasks, const std::function<void(AlignedBuf&)>& fn) {
    grow(threads);
    struct Wait {
      std::mutex mu;
      std::condition_variable cv;
      int left;
      std::exception_ptr first;
    };
    auto w = std::make_shared<Wait>();
    w->left = tasks;
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (int t = 0; t < tasks; ++t)
        queue_.push_back([w, &fn](AlignedBuf& buf) {
          std::exception_ptr e;
          try {
            fn(buf);
          } catch (...) {
            e = std::current_exception();
          }
          std::lock_guard<std::mutex> lk(w->mu);
          if (e && !w->first) w->first = e;
          if (--w->left == 0) w->cv.notify_all();
        });
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lk(w->mu);
    w->cv.wait(lk, [&] { return w->left == 0; });
    if (w->first) std::rethrow_exception(w->first);
  }
  /** fn(chunk index, staging buffer) for chunks 0..chunks-1, spread over up to `concurrency`
   *  threads; the first error stops the others at their next chunk and is rethrown here. */
  void forEachChunk(int concurrency, size_t chunks, const std::function<void(size_t, AlignedBuf&)>& fn) {
    std::atomic<size_t> next{0};
    const int threads = std::max(1, concurrency);
    runAll(threads, static_cast<int>(std::min<size_t>(threads, std::max<size_t>(chunks, 1))), [&](AlignedBuf& bb) {
      for (size_t i; (i = next.fetch_add(1)) < chunks;) try {
        fn(i, bb);
      } catch (...) {
        next = chunks;
        throw;
      }
    });
  }

 private:
  void grow(int n) {
    std::lock_guard<std::mutex> lk(mu_);
    while (static_cast<int>(threads_) < n) {
      ++threads_;
      // the pool lives for the process (never destroyed): its threads wait on the queue
      std::thread([this] { loop(); }).detach();
    }
  }
  void loop() {
    AlignedBuf buf;
    for (;;) {
      std::function<void(AlignedBuf&)> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !queue_.empty(); });
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job(buf);
    }
  }
  std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(AlignedBuf&)>> queue_;
  size_t threads_ = 0;
};

PathPool& poolFor(const std::string& file) {
  static std::mutex mu;
  static std::map<std::string, PathPool*>* pools = new std::map<std::string, PathPool*>();  // process lifetime
  const size_t slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : file.substr(0, slash);
  std::lock_guard<std::mutex> lk(mu);
  auto& p = (*pools)[dir];
  if (!p) p = new PathPool(dir);
  return *p;
}

size_t chunkBytes() {
  if (const char* e = std::getenv("MMOC_DISK_CHUNK_KIB"); e && *e) {
    const long kib = std::atol(e);
    MMOC_CHECK(kib >= 4 && kib % 4 == 0, "MMOC_DISK_CHUNK_KIB=" << e << ": must be a positive multiple of 4 (KiB)");
    return static_cast<size_t>(kib) * 1024;
  }
  return kChunkBytes;
}
bool forceBuffered() {
  const char* e = std::getenv("MMOC_DISK_NO_DIRECT");
  return e && std::strcmp(e, "1") == 0;
}

/** Opens with O_DIRECT where the path allows it; EINVAL (the filesystem refuses it): buffered, once
 *  per path, with a warning. Returns the fd and whether O_DIRECT is on. */
int openFile(PathPool& pool, const std::string& f, int flags, bool& direct, const char* what, int layer) {
  direct = false;
  if (!pool.refusedDirect.load()) {
    int fd = forceBuffered() ? (errno = EINVAL, -1) : ::open(f.c_str(), flags | O_DIRECT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      direct = true;
      return fd;
    }
    if (errno != EINVAL)
      MMOC_FAIL(f << ": " << what << " (disk tier, layer " << layer << "): " << err()
                  << (flags & O_CREAT ? " (check that the disk path exists and is writable: policy.diskPaths)"
                                      : " (written earlier in this run: was it removed or its disk unmounted? restart the run)"));
    if (!forceBuffered()) pool.refusedDirect = true;
    if (!pool.warned.exchange(true))
      std::fprintf(stderr, "mmoc: warning: disk path %s: %s: buffered I/O there (through the page cache)\n", pool.dir().c_str(),
                   forceBuffered() ? "O_DIRECT off (MMOC_DISK_NO_DIRECT=1)" : "the filesystem refuses O_DIRECT (EINVAL)");
  }
  const int fd = ::open(f.c_str(), flags | O_CLOEXEC, 0644);
  MMOC_CHECK(fd >= 0, f << ": " << what << " (disk tier, layer " << layer << "): " << err()
                        << (flags & O_CREAT ? " (check that the disk path exists and is writable: policy.diskPaths)"
                                            : " (written earlier in this run: was it removed or its disk unmounted? restart the run)"));
  return fd;
}

void pwriteAll(int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& f, int layer) {
  while (n > 0) {
    const ssize_t r = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    MMOC_CHECK(r >= 0, f << ": write failed at offset " << off << " (disk tier, layer " << layer << "): " << err()
                         << (errno == ENOSPC ? " (the disk is full: free space or give another policy.diskPaths entry)" : ""));
    MMOC_CHECK(r > 0, f << ": write made no progress at offset " << off << " (disk tier, layer " << layer << ")");
    p += r, n -= static_cast<size_t>(r), off += static_cast<uint64_t>(r);
  }
}
void preadAll(int fd, uint8_t* p, size_t n, uint64_t off, const std::string& f, int layer) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    MMOC_CHECK(r >= 0, f << ": read failed at offset " << off << " (disk tier, layer " << layer << "): " << err());
    MMOC_CHECK(r > 0, f << ": truncated optimizer state of layer " << layer << " (end of file at offset " << off
                        << "; the file was changed outside mmoc: restart the run)");
    p += r, n -= static_cast<size_t>(r), off += static_cast<uint64_t>(r);
  }
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

/** Copies logical bytes [off, off + n) of the concatenated parts to (gather) or from (scatter) buf. */
template <typename SpanT, typename Copy>
void walk(const std::vector<SpanT>& parts, size_t off, size_t n, Copy copy) {
  size_t base = 0, done = 0;
  for (const auto& s : parts) {
    if (done == n) break;
    if (off + done < base + s.n) {
      const size_t in = off + done - base, take = std::min(s.n - in, n - done);
      copy(s, in, done, take);
      done += take;
    }
    base += s.n;
  }
}

}  // namespace

bool writeGroup(const std::string& f, int layer, uint64_t elements, const std::vector<ConstSpan>& parts, int concurrency) {
  PathPool& pool = poolFor(f);
  const std::string tmp = f + ".tmp";
  size_t total = 0;
  for (const auto& s : parts) total += s.n;
  const size_t C = chunkBytes();
  const size_t chunks = (total + C - 1) / C;
  std::vector<uint64_t> sums(chunks);
  bool direct = false;
  Fd fd;
  fd.fd = openFile(pool, tmp, O_WRONLY | O_CREAT | O_TRUNC, direct, "cannot create", layer);
  try {
    pool.forEachChunk(concurrency, chunks, [&](size_t i, AlignedBuf& bb) {
      const size_t off = i * C, n = std::min(C, total - off), padded = alignUp(n);
      uint8_t* buf = bb.get(std::max(C, padded));
      walk(parts, off, n, [&](const ConstSpan& s, size_t in, size_t at, size_t take) {
        std::memcpy(buf + at, static_cast<const uint8_t*>(s.p) + in, take);
      });
      std::memset(buf + n, 0, padded - n);
      sums[i] = chunkHash(buf, n);
      pwriteAll(fd.fd, buf, padded, kHeaderBytes + off, tmp, layer);
    });
    AlignedBuf hb;
    uint8_t* h = hb.get(kHeaderBytes);
    std::memset(h, 0, kHeaderBytes);
    const uint64_t hdr[7] = {kMagic, kVersion, static_cast<uint64_t>(layer), elements, total, C, combine(sums)};
    std::memcpy(h, hdr, sizeof hdr);
    pwriteAll(fd.fd, h, kHeaderBytes, 0, tmp, layer);
    MMOC_CHECK(::fsync(fd.fd) == 0, tmp << ": fsync failed (disk tier, layer " << layer << "): " << err());
    const int fdv = fd.fd;
    fd.fd = -1;
    MMOC_CHECK(::close(fdv) == 0, tmp << ": close failed (disk tier, layer " << layer << "): " << err());
    MMOC_CHECK(std::rename(tmp.c_str(), f.c_str()) == 0,
               "rename " << tmp << " -> " << f << " (disk tier, layer " << layer << "): " << err());
  } catch (...) {
    if (fd.fd >= 0) ::close(fd.fd), fd.fd = -1;
    ::unlink(tmp.c_str());  // nothing half-written stays behind
    throw;
  }
  return direct;
}

bool readGroup(const std::string& f, int layer, uint64_t elements, const std::vector<Span>& parts, int concurrency) {
  PathPool& pool = poolFor(f);
  size_t total = 0;
  for (const auto& s : parts) total += s.n;
  bool direct = false;
  Fd fd;
  fd.fd = openFile(pool, f, O_RDONLY, direct, "cannot open the optimizer state", layer);
  struct stat st {};
  MMOC_CHECK(::fstat(fd.fd, &st) == 0, f << ": stat failed (disk tier, layer " << layer << "): " << err());
  AlignedBuf hb;
  uint8_t* h = hb.get(kHeaderBytes);
  MMOC_CHECK(static_cast<size_t>(st.st_size) >= kHeaderBytes,
             f << ": not the optimizer state of layer " << layer << " (" << elements << " elements): bad header (" << st.st_size << "-byte file)");
  preadAll(fd.fd, h, kHeaderBytes, 0, f, layer);
  uint64_t hdr[7];
  std::memcpy(hdr, h, sizeof hdr);
  MMOC_CHECK(hdr[0] == kMagic && hdr[1] == kVersion && hdr[2] == static_cast<uint64_t>(layer) && hdr[3] == elements && hdr[4] == total &&
                 hdr[5] >= kAlign && hdr[5] % kAlign == 0,
             f << ": not the optimizer state of layer " << layer << " (" << elements << " elements): bad header");
  MMOC_CHECK(static_cast<uint64_t>(st.st_size) == kHeaderBytes + alignUp(total),
             f << ": truncated optimizer state of layer " << layer << " (" << st.st_size << " bytes, expected " << kHeaderBytes + alignUp(total)
               << "; the file was changed outside mmoc: restart the run)");
  const size_t C = hdr[5];
  const size_t chunks = (total + C - 1) / C;
  std::vector<uint64_t> sums(chunks);
  pool.forEachChunk(concurrency, chunks, [&](size_t i, AlignedBuf& bb) {
    const size_t off = i * C, n = std::min(C, total - off), padded = alignUp(n);
    uint8_t* buf = bb.get(std::max(C, padded));
    preadAll(fd.fd, buf, padded, kHeaderBytes + off, f, layer);
    sums[i] = chunkHash(buf, n);
    walk(parts, off, n, [&](const Span& s, size_t in, size_t at, size_t take) {
      std::memcpy(static_cast<uint8_t*>(s.p) + in, buf + at, take);
    });
  });
  MMOC_CHECK(combine(sums) == hdr[6], f << ": checksum mismatch in the optimizer state of layer " << layer
                                        << " (corrupted file): check the disk (dmesg, SMART) and restart the run");
  const int fdv = fd.fd;
  fd.fd = -1;
  MMOC_CHECK(::close(fdv) == 0, f << ": close failed (disk tier, layer " << layer << "): " << err());
  return direct;
}

void corruptDataByte(const std::string& f, uint64_t offset) {
  Fd fd;
  fd.fd = ::open(f.c_str(), O_RDWR | O_CLOEXEC);
  MMOC_CHECK(fd.fd >= 0, f << ": fault injection: cannot open: " << err());
  uint8_t c = 0;
  MMOC_CHECK(::pread(fd.fd, &c, 1, static_cast<off_t>(kHeaderBytes + offset)) == 1, f << ": fault injection: read: " << err());
  c ^= 0x5a;
  MMOC_CHECK(::pwrite(fd.fd, &c, 1, static_cast<off_t>(kHeaderBytes + offset)) == 1, f << ": fault injection: write: " << err());
  MMOC_CHECK(::fsync(fd.fd) == 0, f << ": fault injection: fsync: " << err());
}

BenchResult bench(const std::vector<std::string>& paths, int64_t groupBytes, int groups, int concurrency) {
  MMOC_CHECK(!paths.empty() && groupBytes > 0 && groups > 0 && concurrency > 0, "benchDiskIO: bad arguments");
  BenchResult r;
  const size_t P = paths.size();
  const size_t gb = static_cast<size_t>(groupBytes);
  std::vector<std::vector<uint8_t>> src(P), dst(P);
  for (size_t p = 0; p < P; ++p) {
    src[p].resize(gb), dst[p].resize(gb);
    for (size_t i = 0; i < gb; i += 8) src[p][i] = static_cast<uint8_t>(i * 2654435761u >> 24) ^ static_cast<uint8_t>(p);
  }
  auto file = [&](size_t p, int g) {
    return paths[p] + "/mmoc-bench-" + std::to_string(::getpid()) + "-g" + std::to_string(g) + ".state";
  };
  std::vector<char> direct(P, 1);
  auto phase = [&](bool write) {
    std::vector<std::exception_ptr> errs(P);
    std::vector<std::thread> ts;
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t p = 0; p < P; ++p)
      ts.emplace_back([&, p] {
        try {
          for (int g = static_cast<int>(p); g < groups; g += static_cast<int>(P)) {
            const bool d = write ? writeGroup(file(p, g), g, gb, {{src[p].data(), gb}}, concurrency)
                                 : readGroup(file(p, g), g, gb, {{dst[p].data(), gb}}, concurrency);
            if (!d) direct[p] = 0;
          }
        } catch (...) {
          errs[p] = std::current_exception();
        }
      });
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto& e : errs)
      if (e) std::rethrow_exception(e);
    return s;
  };
  try {
    r.writeSec = phase(true);
    r.readSec = phase(false);
  } catch (...) {
    for (size_t p = 0; p < P; ++p)
      for (int g = static_cast<int>(p); g < groups; g += static_cast<int>(P)) ::unlink(file(p, g).c_str()), ::unlink((file(p, g) + ".tmp").c_str());
    throw;
  }
  for (size_t p = 0; p < P; ++p) {
    if (groups > static_cast<int>(p)) MMOC_CHECK(std::memcmp(src[p].data(), dst[p].data(), gb) == 0, "benchDiskIO: " << paths[p] << ": read back differs");
    for (int g = static_cast<int>(p); g < groups; g += static_cast<int>(P)) ::unlink(file(p, g).c_str());
  }
  r.bytes = groupBytes * groups;
  r.writeGBps = static_cast<double>(r.bytes) / r.writeSec / 1e9;
  r.readGBps = static_cast<double>(r.bytes) / r.readSec / 1e9;
  for (char d : direct) r.direct.push_back(d != 0);
  return r;
}

}  // namespace mmoc::diskio
