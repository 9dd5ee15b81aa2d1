#include "feeds/gzip.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/interrupt.h"

namespace kiln {
namespace {

// Deflate looks back at most this far: the dictionary each block starts with.
constexpr size_t kWindow = 32 * 1024;

bool all_zero(const char* data, size_t size) {
  return size == 0 || (data[0] == 0 && std::memcmp(data, data + 1, size - 1) == 0);
}

Result<> pread_exact(int fd, char* buffer, size_t size, uint64_t offset, std::string_view name) {
  while (size > 0) {
    ssize_t n = ::pread(fd, buffer, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read", name, errno);
    }
    if (n == 0) return fail(ErrorKind::kFailed, "{}: file shrank while being compressed", name);
    buffer += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

// One worker's raw-deflate stream, reset for every block.
class Deflater {
 public:
  explicit Deflater(int level) {
    ok_ = deflateInit2(&stream_, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Deflater() {
    if (ok_) deflateEnd(&stream_);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // Deflates `data` after priming with `dictionary`. A block that is not the
  // last ends with a sync flush (byte-aligned, no final bit) so that the next
  // block's output can follow it directly.
  Result<std::string> compress(std::string_view dictionary, std::string_view data, bool last,
                               std::string_view name) {
    if (!ok_) return fail(ErrorKind::kFailed, "{}: zlib: cannot start deflate", name);
    deflateReset(&stream_);
    if (!dictionary.empty())
      deflateSetDictionary(&stream_, reinterpret_cast<const Bytef*>(dictionary.data()),
                           static_cast<uInt>(dictionary.size()));
    std::string out(deflateBound(&stream_, data.size()) + 64, '\0');
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream_.avail_in = static_cast<uInt>(data.size());
    size_t produced = 0;
    while (true) {
      if (produced == out.size()) out.resize(out.size() * 2);
      stream_.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      stream_.avail_out = static_cast<uInt>(out.size() - produced);
      int rc = deflate(&stream_, last ? Z_FINISH : Z_SYNC_FLUSH);
      produced = out.size() - stream_.avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR)
        return fail(ErrorKind::kFailed, "{}: zlib deflate failed ({})", name, rc);
      if (!last && stream_.avail_in == 0 && stream_.avail_out > 0) break;
    }
    out.resize(produced);
    return out;
  }

 private:
  z_stream stream_{};
  bool ok_ = false;
};

struct Slot {
  bool ready = false;
  std::string output;
  uint32_t crc = 0;
  size_t length = 0;
  std::optional<Error> error;
};

// The blocks of one compression: workers claim them in order, at most
// `window` ahead of the writer, and leave the results in a ring of slots that
// the writer empties in order.
class BlockRing {
 public:
  BlockRing(uint64_t blocks, size_t window) : blocks_(blocks), slots_(window) {}

  // The next block to compress, or nothing when done or stopped.
  std::optional<uint64_t> claim() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return stopped_ || next_ >= blocks_ || next_ < emitted_ + slots_.size(); });
    if (stopped_ || next_ >= blocks_) return std::nullopt;
    return next_++;
  }
  void deliver(uint64_t block, Slot slot) {
    std::lock_guard lock(mutex_);
    slot.ready = true;
    slots_[block % slots_.size()] = std::move(slot);
    changed_.notify_all();
  }
  // Waits for block `block` (the next one in order) and takes it.
  Slot take(uint64_t block) {
    std::unique_lock lock(mutex_);
    Slot& slot = slots_[block % slots_.size()];
    changed_.wait(lock, [&] { return slot.ready; });
    Slot out = std::move(slot);
    slot = Slot{};
    ++emitted_;
    changed_.notify_all();
    return out;
  }
  void stop() {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t blocks_;
  uint64_t next_ = 0;
  uint64_t emitted_ = 0;
  bool stopped_ = false;
  std::vector<Slot> slots_;
};

void put_le32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

}  // namespace

Result<GzipStats> gzip_parallel(int in_fd, uint64_t size, const ByteSink& sink, const GzipOptions& options,
                                std::string_view name) {
  if (options.level < 0 || options.level > 9)
    return fail(ErrorKind::kBadInput, "gzip level {} is out of range 0..9", options.level);
  const size_t block_size = std::max<size_t>(options.block_size, kWindow);
  const uint64_t blocks = size == 0 ? 1 : (size + block_size - 1) / block_size;
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<uint64_t>(threads, blocks));

  // A full block of zeros, compressed once without a dictionary: valid in
  // any position but the last, whatever precedes it.
  std::once_flag zero_once;
  std::string zero_output;
  uint32_t zero_crc = 0;
  std::optional<Error> zero_error;
  auto zero_block = [&](Deflater& deflater) {
    std::call_once(zero_once, [&] {
      std::string zeros(block_size, '\0');
      zero_crc = static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(zeros.data()),
                                             static_cast<uInt>(zeros.size())));
      auto out = deflater.compress({}, zeros, false, name);
      if (out) zero_output = std::move(*out);
      else zero_error = out.error();
    });
  };

  BlockRing ring(blocks, 2 * static_cast<size_t>(threads));
  auto work = [&] {
    Deflater deflater(options.level);
    std::string buffer(block_size + kWindow, '\0');
    while (auto block = ring.claim()) {
      uint64_t start = *block * block_size;
      size_t length = static_cast<size_t>(std::min<uint64_t>(block_size, size - start));
      size_t dictionary = static_cast<size_t>(std::min<uint64_t>(kWindow, start));
      bool last = *block + 1 == blocks;
      Slot slot;
      slot.length = length;
      if (auto read = pread_exact(in_fd, buffer.data(), dictionary + length, start - dictionary, name); !read) {
        slot.error = read.error();
        ring.deliver(*block, std::move(slot));
        continue;
      }
      std::string_view data(buffer.data() + dictionary, length);
      if (!last && length == block_size && all_zero(data.data(), data.size())) {
        zero_block(deflater);
        if (zero_error) slot.error = *zero_error;
        slot.output = zero_output;
        slot.crc = zero_crc;
      } else {
        slot.crc = static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(data.data()),
                                               static_cast<uInt>(data.size())));
        auto out = deflater.compress(std::string_view(buffer.data(), dictionary), data, last, name);
        if (out) slot.output = std::move(*out);
        else slot.error = out.error();
      }
      ring.deliver(*block, std::move(slot));
    }
  };
  std::vector<std::jthread> workers;
  for (unsigned i = 0; i < threads; ++i) workers.emplace_back(work);
  auto stop_workers = [&] {
    ring.stop();
    workers.clear();  // joins
  };

  GzipStats stats;
  std::string header("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8);
  header += static_cast<char>(options.level == 9 ? 2 : options.level == 1 ? 4 : 0);
  header += '\x03';  // made on Unix
  if (auto written = sink(header); !written) {
    stop_workers();
    return std::unexpected(written.error());
  }
  stats.output_bytes = header.size();
  uint32_t crc = static_cast<uint32_t>(crc32(0L, Z_NULL, 0));
  for (uint64_t block = 0; block < blocks; ++block) {
    Slot slot = ring.take(block);
    if (slot.error) {
      stop_workers();
      return std::unexpected(std::move(*slot.error));
    }
    if (auto stopped = check_interrupted(); !stopped) {
      stop_workers();
      return std::unexpected(stopped.error());
    }
    if (auto written = sink(slot.output); !written) {
      stop_workers();
      return std::unexpected(written.error());
    }
    crc = static_cast<uint32_t>(crc32_combine(crc, slot.crc, static_cast<z_off_t>(slot.length)));
    stats.input_bytes += slot.length;
    stats.output_bytes += slot.output.size();
    if (options.progress) options.progress(stats.input_bytes, size);
  }
  workers.clear();
  std::string trailer;
  put_le32(trailer, crc);
  put_le32(trailer, static_cast<uint32_t>(size & 0xffffffffu));
  KILN_TRY(sink(trailer));
  stats.output_bytes += trailer.size();
  stats.crc32 = crc;
  return stats;
}

// ---------------------------------------------------------------- expanding

struct GzipExpander::State {
  z_stream stream{};
  bool ok = false;
  uint64_t limit = 0;
  uint64_t produced = 0;
  uint64_t consumed = 0;
  std::string name;
  bool in_member = false;   // inside a member (its end not seen yet)
  std::string buffer = std::string(256 * 1024, '\0');

  ~State() {
    if (ok) inflateEnd(&stream);
  }
};

GzipExpander::GzipExpander(uint64_t limit, std::string name) : state_(std::make_unique<State>()) {
  state_->limit = limit;
  state_->name = std::move(name);
  state_->ok = inflateInit2(&state_->stream, 15 + 16) == Z_OK;
}

GzipExpander::GzipExpander(GzipExpander&&) noexcept = default;
GzipExpander::~GzipExpander() = default;

Result<> GzipExpander::update(std::string_view compressed, const ByteSink& sink) {
  State& s = *state_;
  if (!s.ok) return fail(ErrorKind::kFailed, "{}: zlib: cannot start inflate", s.name);
  s.stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  s.stream.avail_in = static_cast<uInt>(compressed.size());
  while (true) {
    if (!s.in_member) {
      if (s.stream.avail_in == 0) break;
      // Another member follows the one that ended.
      inflateReset(&s.stream);
      s.in_member = true;
    }
    // Never ask for more than the limit allows, plus one byte to notice
    // that the data wants to go past it.
    uint64_t room = s.limit - s.produced;
    size_t want = room >= s.buffer.size() ? s.buffer.size() : static_cast<size_t>(room) + 1;
    s.stream.next_out = reinterpret_cast<Bytef*>(s.buffer.data());
    s.stream.avail_out = static_cast<uInt>(want);
    uInt before_in = s.stream.avail_in;
    int rc = inflate(&s.stream, Z_NO_FLUSH);
    size_t out = want - s.stream.avail_out;
    s.consumed += before_in - s.stream.avail_in;
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR)
      return fail(ErrorKind::kUntrusted, "{}: corrupt gzip data near compressed byte {}: {}", s.name,
                  s.consumed, s.stream.msg ? s.stream.msg : "zlib error");
    if (out > room)
      return fail(ErrorKind::kUntrusted,
                  "{}: expands beyond the {} bytes declared for it; refusing it (a gzip bomb, or a "
                  "declaration that does not match the image)",
                  s.name, s.limit);
    s.produced += out;
    if (out > 0) KILN_TRY(sink(std::string_view(s.buffer.data(), out)));
    if (rc == Z_STREAM_END) {
      s.in_member = false;
      continue;
    }
    // With room left in the output, inflate took all it could: the rest
    // needs more input.
    if (s.stream.avail_out > 0 || (rc == Z_BUF_ERROR && out == 0)) break;
  }
  return {};
}

Result<uint64_t> GzipExpander::finish() {
  State& s = *state_;
  if (s.consumed == 0) return fail(ErrorKind::kUntrusted, "{}: empty, not gzip data", s.name);
  if (s.in_member)
    return fail(ErrorKind::kUntrusted, "{}: the gzip data is truncated (it ends inside a member)", s.name);
  return s.produced;
}

}  // namespace kiln
