#include "base/hash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include <openssl/evp.h>

#include "base/files.h"

namespace kiln {

struct Hasher::State {
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(context); }
};

Hasher::Hasher(HashAlgorithm algorithm) : state_(std::make_unique<State>()) {
  const EVP_MD* md = algorithm == HashAlgorithm::kSha1     ? EVP_sha1()
                     : algorithm == HashAlgorithm::kSha512 ? EVP_sha512()
                                                           : EVP_sha256();
  EVP_DigestInit_ex(state_->context, md, nullptr);
}

Hasher::Hasher(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

Hasher& Hasher::update(const void* data, size_t size) {
  EVP_DigestUpdate(state_->context, data, size);
  return *this;
}

Hasher& Hasher::update(std::string_view data) { return update(data.data(), data.size()); }

Hasher& Hasher::field(std::string_view data) {
  uint64_t size = data.size();
  update(&size, sizeof size);
  return update(data);
}

std::string Hasher::raw_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(state_->context, digest, &length);
  return std::string(reinterpret_cast<char*>(digest), length);
}

std::string Hasher::hex_digest() { return to_hex(raw_digest()); }

bool is_sha256_hex(std::string_view text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) { return Hasher().update(data).hex_digest(); }

namespace {

constexpr size_t kChunk = 1 << 20;

// Hashes `length` zero bytes, for a hole: SHA has no shortcut for zeros, but
// reading a hole makes the kernel clear pages, which costs more than hashing
// them, and disk images are mostly holes.
void hash_zeros(Hasher& hasher, uint64_t length) {
  static const std::string zeros(kChunk, '\0');
  while (length > 0) {
    uint64_t chunk = std::min<uint64_t>(length, zeros.size());
    hasher.update(zeros.data(), chunk);
    length -= chunk;
  }
}

// Reads [at, at + size) of fd in chunks, handing each to `use`.
Result<> read_run(int fd, uint64_t at, uint64_t size, std::string& buffer, std::string_view what,
                  const std::function<Result<>(const char* data, size_t size, uint64_t at)>& use) {
  for (uint64_t end = at + size; at < end;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), end - at));
    ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(at));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read", what, errno);
    }
    if (n == 0) return fail(ErrorKind::kFailed, "{}: changed while being read", what);
    KILN_TRY(use(buffer.data(), static_cast<size_t>(n), at));
    at += static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

Result<std::string> file_digest_hex(const std::filesystem::path& path, HashAlgorithm algorithm) {
  KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat", path.string(), errno);
  std::string buffer(kChunk, '\0');
  Hasher hasher(algorithm);
  auto hash = [&](const char* data, size_t size, uint64_t) -> Result<> {
    hasher.update(data, size);
    return {};
  };
  KILN_TRY(for_each_run(
      fd.get(), 0, static_cast<uint64_t>(st.st_size), path.string(),
      [&](uint64_t at, uint64_t size) { return read_run(fd.get(), at, size, buffer, path.string(), hash); },
      [&](uint64_t size) { hash_zeros(hasher, size); }));
  return hasher.hex_digest();
}

Result<std::string> copy_sparse_digest(int src_fd, uint64_t src_offset, int dst_fd, uint64_t length,
                                       std::string_view what) {
  std::string buffer(kChunk, '\0');
  Hasher hasher;
  auto copy = [&](const char* data, size_t size, uint64_t at) -> Result<> {
    hasher.update(data, size);
    return pwrite_all(dst_fd, data, size, at - src_offset, what);
  };
  KILN_TRY(for_each_run(
      src_fd, src_offset, length, what,
      [&](uint64_t at, uint64_t size) { return read_run(src_fd, at, size, buffer, what, copy); },
      [&](uint64_t size) { hash_zeros(hasher, size); }));
  return hasher.hex_digest();
}

}  // namespace kiln
