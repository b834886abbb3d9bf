// Disk I/O of the offload engine's disk tier (issue 6), without torch headers: one file per
// optimizer-state group, written to `<file>.tmp` and renamed, read back with its checksum verified.
//
//   file  = header (4096 bytes) + data (the parts concatenated, zero-padded to a multiple of 4096)
//   header = {magic, version, layer, elements, data bytes, chunk bytes, checksum}, zero-padded
//
// Transfers use O_DIRECT with 4096-aligned buffers, sizes and offsets (the caller's buffers need
// no alignment: each chunk is staged through an aligned bounce buffer owned by a pool thread).
// Where the filesystem refuses O_DIRECT (EINVAL at open), the path falls back to buffered I/O with
// one warning on stderr per path. A transfer is split into chunks (8 MiB) that up to `concurrency`
// threads of the path's pool (created once per path, shared by every caller) move at once.
// The checksum is a deterministic function of the bytes and the chunk size: a 64-bit FNV-1a-style
// hash per chunk (over 8-byte words in 4 interleaved lanes, then the tail bytes), the chunk hashes
// combined in order with FNV-1a. Every syscall is checked; errors name the file and the layer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mmoc::diskio {

constexpr size_t kAlign = 4096;          // O_DIRECT alignment of buffers, sizes and offsets
constexpr size_t kHeaderBytes = 4096;    // the data starts here
constexpr size_t kChunkBytes = 8u << 20;  // default chunk (MMOC_DISK_CHUNK_KIB overrides, tests)

struct ConstSpan {
  const void* p;
  size_t n;
};
struct Span {
  void* p;
  size_t n;
};

/** Writes the parts (concatenated) as layer `layer`'s group of `elements` elements to `file`
 *  (through `file.tmp`, fsync, rename). Returns true when O_DIRECT was used. */
bool writeGroup(const std::string& file, int layer, uint64_t elements, const std::vector<ConstSpan>& parts, int concurrency);
/** Reads `file` into the parts, checking the header (layer, elements, sizes) and the checksum.
 *  Returns true when O_DIRECT was used. */
bool readGroup(const std::string& file, int layer, uint64_t elements, const std::vector<Span>& parts, int concurrency);

/** Fault injection for the tests: flips data byte `offset` of a written file (buffered, synced). */
void corruptDataByte(const std::string& file, uint64_t offset);

struct BenchResult {
  double writeGBps = 0, readGBps = 0, writeSec = 0, readSec = 0;
  int64_t bytes = 0;            // written (and read) in all
  std::vector<bool> direct;     // per path: O_DIRECT used
};
/** Writes then reads `groups` groups of `groupBytes` bytes, round-robin over the paths (one caller
 *  thread per path, as ranks on different disks would), `concurrency` chunk threads per path. */
BenchResult bench(const std::vector<std::string>& paths, int64_t groupBytes, int groups, int concurrency);

}  // namespace mmoc::diskio
