#include "crypto/hash.h"

#include <fcntl.h>
#include <unistd.h>

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

Result<std::string> file_digest_hex(const std::filesystem::path& path, HashAlgorithm algorithm) {
  KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  Hasher hasher(algorithm);
  std::string buffer(1 << 20, '\0');
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read", path.string(), errno);
    }
    if (n == 0) break;
    hasher.update(buffer.data(), n);
  }
  return hasher.hex_digest();
}

}  // namespace kiln
