#include "crypto/sector_cipher.h"

#include <string.h>

#include <array>
#include <regex>

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace kiln {
namespace {

constexpr uint64_t kIvSectorSize = 512;
constexpr size_t kBlock = 16;

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

enum class IvMode { kPlain64, kPlain, kEssivSha256 };

// The OpenSSL cipher for an AES chain and key size, or null.
const EVP_CIPHER* aes_cipher(std::string_view chain, size_t key_bytes) {
  if (chain == "xts") {
    if (key_bytes == 32) return EVP_aes_128_xts();
    if (key_bytes == 64) return EVP_aes_256_xts();
  } else if (chain == "cbc") {
    if (key_bytes == 16) return EVP_aes_128_cbc();
    if (key_bytes == 24) return EVP_aes_192_cbc();
    if (key_bytes == 32) return EVP_aes_256_cbc();
  }
  return nullptr;
}

Result<IvMode> iv_mode(std::string_view iv) {
  if (iv == "plain64") return IvMode::kPlain64;
  if (iv == "plain") return IvMode::kPlain;
  if (iv == "essiv:sha256") return IvMode::kEssivSha256;
  return fail(ErrorKind::kBadInput, "IV generator \"{}\" is not one kiln implements (plain64, plain, essiv:sha256)", iv);
}

std::unexpected<Error> openssl_failure(std::string_view what) {
  return fail(ErrorKind::kFailed, "OpenSSL failed to {}", what);
}

}  // namespace

Result<CipherSpec> CipherSpec::parse(std::string_view text) {
  static const std::regex pattern("([a-z0-9_]+)-([a-z0-9]+)(-([a-z0-9]+(:[a-z0-9]+)?))?");
  std::match_results<std::string_view::const_iterator> match;
  if (!std::regex_match(text.begin(), text.end(), match, pattern))
    return fail(ErrorKind::kBadInput, "cipher \"{}\": expected CIPHER-MODE-IV, e.g. \"aes-xts-plain64\"", text);
  return CipherSpec{match[1].str(), match[2].str(), match[4].str()};
}

struct SectorCipher::State {
  // AES decrypts with its own key schedule: one context each way.
  CtxPtr encrypt;
  CtxPtr decrypt;
  CtxPtr essiv;  // for essiv: encrypts sector numbers into IVs
  IvMode iv = IvMode::kPlain64;
  uint32_t sector_size = 512;
  bool large_sector_ivs = false;
};

bool SectorCipher::supports(std::string_view spec) {
  auto parsed = CipherSpec::parse(spec);
  return parsed && parsed->cipher == "aes" && (parsed->chain == "xts" || parsed->chain == "cbc") &&
         iv_mode(parsed->iv).has_value() && !(parsed->chain == "xts" && parsed->iv.starts_with("essiv"));
}

Result<SectorCipher> SectorCipher::create(std::string_view spec, const Secret& key, uint32_t sector_size,
                                          bool large_sector_ivs) {
  if (!supports(spec))
    return fail(ErrorKind::kBadInput, "cipher \"{}\" is not one kiln encrypts itself (aes with xts or cbc, and "
                                      "plain64, plain or essiv:sha256 IVs)", spec);
  if (sector_size != 512 && sector_size != 4096)
    return fail(ErrorKind::kBadInput, "encryption sector size {}: expected 512 or 4096", sector_size);
  KILN_ASSIGN(CipherSpec parsed, CipherSpec::parse(spec));
  const EVP_CIPHER* cipher = aes_cipher(parsed.chain, key.size());
  if (!cipher)
    return fail(ErrorKind::kBadInput, "cipher \"{}\" takes no {}-bit key", spec, key.size() * 8);
  auto state = std::make_unique<State>();
  KILN_ASSIGN(state->iv, iv_mode(parsed.iv));
  state->sector_size = sector_size;
  state->large_sector_ivs = large_sector_ivs;
  for (int direction : {1, 0}) {
    CtxPtr& ctx = direction ? state->encrypt : state->decrypt;
    ctx.reset(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_CipherInit_ex(ctx.get(), cipher, nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                                  nullptr, direction) != 1)
      return openssl_failure("set up the data cipher");
    EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  }
  if (state->iv == IvMode::kEssivSha256) {
    Secret salt(SHA256_DIGEST_LENGTH);
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(),
           reinterpret_cast<unsigned char*>(salt.data()));
    state->essiv.reset(EVP_CIPHER_CTX_new());
    if (!state->essiv || EVP_EncryptInit_ex(state->essiv.get(), EVP_aes_256_ecb(), nullptr,
                                            reinterpret_cast<const unsigned char*>(salt.data()), nullptr) != 1)
      return openssl_failure("set up the essiv cipher");
    EVP_CIPHER_CTX_set_padding(state->essiv.get(), 0);
  }
  return SectorCipher(std::move(state));
}

SectorCipher::SectorCipher(std::unique_ptr<State> state) : state_(std::move(state)) {}
SectorCipher::SectorCipher(SectorCipher&&) noexcept = default;
SectorCipher& SectorCipher::operator=(SectorCipher&&) noexcept = default;
SectorCipher::~SectorCipher() = default;

uint32_t SectorCipher::sector_size() const { return state_->sector_size; }

Result<> SectorCipher::encrypt(char* data, size_t size, uint64_t offset) { return run(data, size, offset, true); }

Result<> SectorCipher::decrypt(char* data, size_t size, uint64_t offset) { return run(data, size, offset, false); }

Result<> SectorCipher::run(char* data, size_t size, uint64_t offset, bool encrypt) {
  const uint32_t sector = state_->sector_size;
  if (size % sector != 0 || offset % sector != 0)
    return fail(ErrorKind::kFailed, "internal: {} bytes at {} are not whole {}-byte sectors", size, offset, sector);
  const uint64_t iv_unit = state_->large_sector_ivs ? sector : kIvSectorSize;
  EVP_CIPHER_CTX* ctx = encrypt ? state_->encrypt.get() : state_->decrypt.get();
  std::array<unsigned char, kBlock> iv{};
  for (size_t done = 0; done < size; done += sector) {
    uint64_t number = (offset + done) / iv_unit;
    iv.fill(0);
    if (state_->iv == IvMode::kPlain) number &= 0xffffffffu;
    for (int i = 0; i < 8; ++i) iv[i] = static_cast<unsigned char>(number >> (8 * i));
    if (state_->iv == IvMode::kEssivSha256) {
      int length = 0;
      if (EVP_EncryptUpdate(state_->essiv.get(), iv.data(), &length, iv.data(), kBlock) != 1 || length != kBlock)
        return openssl_failure("make an essiv IV");
    }
    auto* block = reinterpret_cast<unsigned char*>(data + done);
    int length = 0;
    if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, iv.data(), -1) != 1 ||
        EVP_CipherUpdate(ctx, block, &length, block, static_cast<int>(sector)) != 1 ||
        length != static_cast<int>(sector))
      return openssl_failure(encrypt ? "encrypt a sector" : "decrypt a sector");
  }
  return {};
}

}  // namespace kiln
