#include "crypto/ssh_host_key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "base/base64.h"
#include "base/hash.h"

namespace kiln {
namespace {

// The SSH wire encoding (RFC 4251): uint32 lengths, big-endian.
class WireWriter {
 public:
  WireWriter& u32(uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<char>((value >> shift) & 0xff));
    return *this;
  }
  WireWriter& string(std::string_view value) {
    u32(static_cast<uint32_t>(value.size()));
    out_.append(value);
    return *this;
  }
  // A positive mpint: no leading zero bytes, and one added when the top bit
  // is set so that it does not read as negative.
  WireWriter& mpint(std::string_view magnitude) {
    size_t first = magnitude.find_first_not_of('\0');
    magnitude = first == std::string_view::npos ? std::string_view() : magnitude.substr(first);
    if (!magnitude.empty() && (static_cast<uint8_t>(magnitude[0]) & 0x80))
      return string(std::string(1, '\0').append(magnitude));
    return string(magnitude);
  }
  WireWriter& raw(std::string_view bytes) {
    out_.append(bytes);
    return *this;
  }
  const std::string& bytes() const { return out_; }
  size_t size() const { return out_.size(); }

 private:
  std::string out_;
};

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Result<Pkey> generate(SshKeyType type) {
  EVP_PKEY* key = type == SshKeyType::kEd25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                               : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!key) return fail(ErrorKind::kFailed, "cannot generate an ssh host key (OpenSSL)");
  return Pkey(key);
}

// The key's public blob and the type-specific private fields, as OpenSSH
// lays them out.
struct KeyParts {
  std::string type_name;
  std::string public_blob;
  std::string private_fields;
};

Result<KeyParts> ed25519_parts(EVP_PKEY* key) {
  std::string pub(32, '\0'), seed(32, '\0');
  size_t pub_size = pub.size(), seed_size = seed.size();
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(pub.data()), &pub_size) != 1 ||
      EVP_PKEY_get_raw_private_key(key, reinterpret_cast<unsigned char*>(seed.data()), &seed_size) != 1 ||
      pub_size != 32 || seed_size != 32)
    return fail(ErrorKind::kFailed, "cannot read the ed25519 key (OpenSSL)");
  KeyParts parts{"ssh-ed25519", {}, {}};
  parts.public_blob = WireWriter().string(parts.type_name).string(pub).bytes();
  // OpenSSH keeps the 32-byte seed followed by the public key.
  parts.private_fields = WireWriter().string(pub).string(seed + pub).bytes();
  return parts;
}

Result<KeyParts> ecdsa_parts(EVP_PKEY* key) {
  std::string point(65, '\0');
  size_t point_size = 0;
  BIGNUM* d = nullptr;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      reinterpret_cast<unsigned char*>(point.data()), point.size(), &point_size) != 1 ||
      point_size != 65 || EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1)
    return fail(ErrorKind::kFailed, "cannot read the ecdsa key (OpenSSL)");
  std::string scalar(static_cast<size_t>(BN_num_bytes(d)), '\0');
  BN_bn2bin(d, reinterpret_cast<unsigned char*>(scalar.data()));
  BN_clear_free(d);
  KeyParts parts{"ecdsa-sha2-nistp256", {}, {}};
  parts.public_blob = WireWriter().string(parts.type_name).string("nistp256").string(point).bytes();
  parts.private_fields = WireWriter().string("nistp256").string(point).mpint(scalar).bytes();
  OPENSSL_cleanse(scalar.data(), scalar.size());
  return parts;
}

std::string armored(std::string_view blob) {
  std::string text = base64_encode(blob);
  std::string out = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
  for (size_t at = 0; at < text.size(); at += 70) out += text.substr(at, 70) + "\n";
  return out + "-----END OPENSSH PRIVATE KEY-----\n";
}

// PROTOCOL.key: one unencrypted key; the private section starts with a
// repeated random check word and is padded 1, 2, 3... to the "none"
// cipher's block size of 8.
Result<std::string> openssh_private_key(const KeyParts& parts, std::string_view comment) {
  uint32_t check = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&check), sizeof check) != 1)
    return fail(ErrorKind::kFailed, "no random bytes for the ssh host key (OpenSSL)");
  WireWriter section;
  section.u32(check).u32(check).string(parts.type_name).raw(parts.private_fields).string(comment);
  for (char pad = 1; section.size() % 8 != 0; ++pad) section.raw(std::string_view(&pad, 1));
  WireWriter file;
  file.raw(std::string_view("openssh-key-v1\0", 15)).string("none").string("none").string("").u32(1);
  file.string(parts.public_blob).string(section.bytes());
  return armored(file.bytes());
}

std::string fingerprint(std::string_view public_blob) {
  Hasher hasher;
  hasher.update(public_blob);
  std::string text = base64_encode(hasher.raw_digest());
  while (text.ends_with('=')) text.pop_back();
  return "SHA256:" + text;
}

}  // namespace

Result<SshHostKey> generate_ssh_host_key(SshKeyType type, std::string_view comment) {
  KILN_ASSIGN(Pkey key, generate(type));
  KILN_ASSIGN(KeyParts parts, type == SshKeyType::kEd25519 ? ed25519_parts(key.get()) : ecdsa_parts(key.get()));
  SshHostKey out;
  out.file_name = type == SshKeyType::kEd25519 ? "ssh_host_ed25519_key" : "ssh_host_ecdsa_key";
  KILN_ASSIGN(out.private_key, openssh_private_key(parts, comment));
  out.public_key = parts.type_name + " " + base64_encode(parts.public_blob) + " " + std::string(comment) + "\n";
  out.fingerprint = fingerprint(parts.public_blob);
  OPENSSL_cleanse(parts.private_fields.data(), parts.private_fields.size());
  return out;
}

}  // namespace kiln
