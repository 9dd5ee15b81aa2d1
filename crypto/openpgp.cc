#include "crypto/openpgp.h"

#include <fcntl.h>
#include <gpgme.h>

#include <algorithm>
#include <clocale>
#include <mutex>
#include <optional>

#include "base/files.h"
#include "base/stale_temps.h"
#include "crypto/password.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

struct ContextDeleter {
  void operator()(gpgme_ctx_t ctx) const { gpgme_release(ctx); }
};
using Context = std::unique_ptr<gpgme_context, ContextDeleter>;

struct DataDeleter {
  void operator()(gpgme_data_t data) const { gpgme_data_release(data); }
};
using Data = std::unique_ptr<gpgme_data, DataDeleter>;

struct KeyDeleter {
  void operator()(gpgme_key_t key) const { gpgme_key_unref(key); }
};
using Key = std::unique_ptr<_gpgme_key, KeyDeleter>;

std::string gpg_text(gpgme_error_t err) { return gpgme_strerror(err); }

// gpgme must be initialised once per process before any context exists.
Result<> init_gpgme() {
  static std::once_flag once;
  static gpgme_error_t engine = 0;
  std::call_once(once, [] {
    gpgme_check_version(nullptr);
    gpgme_set_locale(nullptr, LC_CTYPE, std::setlocale(LC_CTYPE, nullptr));
    engine = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
  });
  if (engine)
    return fail(ErrorKind::kMissingTool,
                "gpg (GnuPG) is not usable by gpgme: {}; install the Debian package 'gnupg'",
                gpg_text(engine));
  return {};
}

// A context bound to one GnuPG home (empty: the default one), ASCII armor on,
// never touching the network (no key servers, no WKD).
Result<Context> new_context(const fs::path& home) {
  KILN_TRY(init_gpgme());
  gpgme_ctx_t raw = nullptr;
  if (gpgme_error_t err = gpgme_new(&raw))
    return fail(ErrorKind::kFailed, "gpgme: cannot create a context: {}", gpg_text(err));
  Context ctx(raw);
  gpgme_set_protocol(ctx.get(), GPGME_PROTOCOL_OpenPGP);
  if (!home.empty()) {
    if (gpgme_error_t err = gpgme_ctx_set_engine_info(ctx.get(), GPGME_PROTOCOL_OpenPGP, nullptr,
                                                      home.c_str()))
      return fail(ErrorKind::kFailed, "{}: cannot use as a GnuPG home: {}", home.string(),
                  gpg_text(err));
  }
  gpgme_set_armor(ctx.get(), 1);
  gpgme_set_offline(ctx.get(), 1);
  return ctx;
}

Result<Data> memory_data(std::string_view bytes) {
  gpgme_data_t raw = nullptr;
  if (gpgme_error_t err = gpgme_data_new_from_mem(&raw, bytes.data(), bytes.size(), 0))
    return fail(ErrorKind::kFailed, "gpgme: cannot wrap data: {}", gpg_text(err));
  return Data(raw);
}

Result<Data> empty_data() {
  gpgme_data_t raw = nullptr;
  if (gpgme_error_t err = gpgme_data_new(&raw))
    return fail(ErrorKind::kFailed, "gpgme: cannot allocate data: {}", gpg_text(err));
  return Data(raw);
}

Result<Data> fd_data(int fd) {
  gpgme_data_t raw = nullptr;
  if (gpgme_error_t err = gpgme_data_new_from_fd(&raw, fd))
    return fail(ErrorKind::kFailed, "gpgme: cannot wrap a file: {}", gpg_text(err));
  return Data(raw);
}

std::string take_text(gpgme_data_t data) {
  std::string out;
  gpgme_data_seek(data, 0, SEEK_SET);
  char buffer[8192];
  ssize_t n;
  while ((n = gpgme_data_read(data, buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<size_t>(n));
  return out;
}

// Primary fingerprint and user id of the key with fingerprint `fpr`.
SignatureInfo describe_signer(gpgme_ctx_t ctx, gpgme_signature_t sig) {
  SignatureInfo info;
  info.signing_fingerprint = sig->fpr ? sig->fpr : "";
  info.fingerprint = info.signing_fingerprint;
  info.created = static_cast<int64_t>(sig->timestamp);
  gpgme_key_t raw = nullptr;
  if (sig->fpr && gpgme_get_key(ctx, sig->fpr, &raw, 0) == 0) {
    Key key(raw);
    if (key->fpr) info.fingerprint = key->fpr;
    if (key->uids && key->uids->uid) info.user_id = key->uids->uid;
  }
  return info;
}

// Turns gpgme's verdict into a signer or an error naming what is wrong. One
// bad signature spoils the lot; otherwise one good signature by a trusted key
// is enough.
Result<SignatureInfo> judge(gpgme_ctx_t ctx, gpgme_error_t op_err, std::string_view keyring,
                            std::string_view signature_name, std::string_view data_name) {
  if (gpgme_err_code(op_err) == GPG_ERR_NO_DATA)
    return fail(ErrorKind::kUntrusted, "{}: not an OpenPGP signature", signature_name);
  if (op_err)
    return fail(ErrorKind::kUntrusted, "{}: cannot check the signature: {}", signature_name,
                gpg_text(op_err));
  gpgme_verify_result_t result = gpgme_op_verify_result(ctx);
  if (!result || !result->signatures)
    return fail(ErrorKind::kUntrusted, "{}: holds no signature", signature_name);
  std::optional<SignatureInfo> good;
  std::optional<Error> problem;
  for (gpgme_signature_t sig = result->signatures; sig; sig = sig->next) {
    std::string key_id = sig->fpr ? sig->fpr : "(unknown key)";
    switch (gpgme_err_code(sig->status)) {
      case GPG_ERR_NO_ERROR:
        if (!good) good = describe_signer(ctx, sig);
        break;
      case GPG_ERR_BAD_SIGNATURE:
        return fail(ErrorKind::kUntrusted,
                    "{}: BAD signature over {} (key {}): the data changed after it was signed, "
                    "or the signature belongs to another file",
                    signature_name, data_name, key_id);
      case GPG_ERR_NO_PUBKEY:
        if (!problem)
          problem = Error{ErrorKind::kUntrusted,
                          fmt::format("{}: signed by key {}, which is not among the trusted keys in {}; "
                                      "if you trust that publisher, add their public key there",
                                      signature_name, key_id, keyring),
                          {}, {}};
        break;
      case GPG_ERR_KEY_EXPIRED:
      case GPG_ERR_SIG_EXPIRED:
        if (!problem)
          problem = Error{ErrorKind::kUntrusted,
                          fmt::format("{}: made by key {}, which has expired (or the signature has)",
                                      signature_name, key_id),
                          {}, {}};
        break;
      case GPG_ERR_CERT_REVOKED:
        if (!problem)
          problem = Error{ErrorKind::kUntrusted,
                          fmt::format("{}: made by key {}, which has been revoked", signature_name, key_id),
                          {}, {}};
        break;
      default:
        if (!problem)
          problem = Error{ErrorKind::kUntrusted,
                          fmt::format("{}: the signature by key {} does not verify: {}", signature_name,
                                      key_id, gpg_text(sig->status)),
                          {}, {}};
    }
  }
  if (good) return *good;
  return std::unexpected(std::move(*problem));
}

}  // namespace

std::string SignatureInfo::describe() const {
  if (user_id.empty()) return fingerprint;
  return fmt::format("{} ({})", user_id, fingerprint);
}

// ---------------------------------------------------------------- TrustedKeys

struct TrustedKeys::State {
  TempDir home;
  std::string name;
  std::vector<std::string> fingerprints;
};

TrustedKeys::TrustedKeys(std::unique_ptr<State> state) : state_(std::move(state)) {}
TrustedKeys::TrustedKeys(TrustedKeys&&) noexcept = default;
TrustedKeys& TrustedKeys::operator=(TrustedKeys&&) noexcept = default;
TrustedKeys::~TrustedKeys() = default;

const std::vector<std::string>& TrustedKeys::fingerprints() const { return state_->fingerprints; }
const std::string& TrustedKeys::name() const { return state_->name; }

Result<TrustedKeys> TrustedKeys::load(const fs::path& keyring) {
  KILN_ASSIGN(std::string keys, read_file(keyring));
  return from_memory(keys, keyring.string());
}

Result<TrustedKeys> TrustedKeys::from_memory(std::string_view keys, std::string name) {
  // A short path: gpg puts sockets in its home when it needs any. Tagged
  // with this process, so that a later run can remove it if this one is killed.
  KILN_ASSIGN(TempDir home, create_tagged_temp_dir(fs::temp_directory_path(), "kiln-gnupg"));
  // Importing and verifying need no secret key, so no gpg-agent: none is
  // started, and none is left running after the home is gone.
  KILN_TRY(write_file_atomic(home.path() / "gpg.conf", "no-autostart\n", 0600));
  KILN_ASSIGN(Context ctx, new_context(home.path()));
  KILN_ASSIGN(Data data, memory_data(keys));
  if (gpgme_error_t err = gpgme_op_import(ctx.get(), data.get()))
    return fail(ErrorKind::kBadInput, "{}: cannot import keys: {}", name, gpg_text(err));
  gpgme_import_result_t result = gpgme_op_import_result(ctx.get());
  std::vector<std::string> fingerprints;
  for (gpgme_import_status_t status = result ? result->imports : nullptr; status; status = status->next)
    if (status->result == 0 && status->fpr &&
        std::find(fingerprints.begin(), fingerprints.end(), status->fpr) == fingerprints.end())
      fingerprints.push_back(status->fpr);
  if (fingerprints.empty())
    return fail(ErrorKind::kBadInput,
                "{}: holds no OpenPGP public key; export one with `gpg --export KEYID > FILE`", name);
  auto state = std::make_unique<State>(State{std::move(home), std::move(name), std::move(fingerprints)});
  return TrustedKeys(std::move(state));
}

Result<SignatureInfo> TrustedKeys::verify_detached(std::string_view data, std::string_view signature,
                                                   std::string_view data_name,
                                                   std::string_view signature_name) const {
  KILN_ASSIGN(Context ctx, new_context(state_->home.path()));
  KILN_ASSIGN(Data sig, memory_data(signature));
  KILN_ASSIGN(Data signed_data, memory_data(data));
  gpgme_error_t err = gpgme_op_verify(ctx.get(), sig.get(), signed_data.get(), nullptr);
  return judge(ctx.get(), err, state_->name, signature_name, data_name);
}

Result<SignatureInfo> TrustedKeys::verify_detached_file(const fs::path& data, std::string_view signature,
                                                        std::string_view signature_name) const {
  KILN_ASSIGN(UniqueFd fd, open_file(data, O_RDONLY));
  KILN_ASSIGN(Context ctx, new_context(state_->home.path()));
  KILN_ASSIGN(Data sig, memory_data(signature));
  KILN_ASSIGN(Data signed_data, fd_data(fd.get()));
  gpgme_error_t err = gpgme_op_verify(ctx.get(), sig.get(), signed_data.get(), nullptr);
  return judge(ctx.get(), err, state_->name, signature_name, data.string());
}

Result<VerifiedText> TrustedKeys::verify_clearsigned(std::string_view text, std::string_view name) const {
  KILN_ASSIGN(Context ctx, new_context(state_->home.path()));
  KILN_ASSIGN(Data sig, memory_data(text));
  KILN_ASSIGN(Data plain, empty_data());
  gpgme_error_t err = gpgme_op_verify(ctx.get(), sig.get(), nullptr, plain.get());
  KILN_ASSIGN(SignatureInfo signer, judge(ctx.get(), err, state_->name, name, name));
  return VerifiedText{take_text(plain.get()), std::move(signer)};
}

// ----------------------------------------------------------------- SigningKey

struct SigningKey::State {
  fs::path home;
  std::string key_name;  // as the user gave it, for errors
  std::string fingerprint;
  std::string user_id;
  std::string passphrase;
  bool has_passphrase = false;

  ~State() { wipe(passphrase); }
};

SigningKey::SigningKey(std::unique_ptr<State> state) : state_(std::move(state)) {}
SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

const std::string& SigningKey::fingerprint() const { return state_->fingerprint; }
const std::string& SigningKey::user_id() const { return state_->user_id; }

namespace {

std::string home_description(const fs::path& home) {
  if (!home.empty()) return home.string();
  const char* env = std::getenv("GNUPGHOME");
  return env && *env ? std::string(env) : "~/.gnupg";
}

gpgme_error_t give_passphrase(void* hook, const char*, const char*, int prev_was_bad, int fd) {
  // A wrong passphrase is final: asking again would loop forever.
  if (prev_was_bad) return gpg_error(GPG_ERR_BAD_PASSPHRASE);
  const std::string& passphrase = *static_cast<const std::string*>(hook);
  if (gpgme_io_writen(fd, passphrase.data(), passphrase.size()) != 0 || gpgme_io_writen(fd, "\n", 1) != 0)
    return gpgme_error_from_syserror();
  return 0;
}

}  // namespace

Result<SigningKey> SigningKey::open(const SigningKeyOptions& options) {
  auto state = std::make_unique<State>();
  state->home = options.gnupg_home;
  state->key_name = options.key;
  if (options.key.empty())
    return fail(ErrorKind::kBadInput, "no signing key given: name one by key id, fingerprint or e-mail");
  if (!options.passphrase_file.empty()) {
    KILN_ASSIGN(state->passphrase, read_password_file(options.passphrase_file.string()));
    state->has_passphrase = true;
  }
  KILN_ASSIGN(Context ctx, new_context(state->home));
  gpgme_key_t raw = nullptr;
  gpgme_error_t err = gpgme_get_key(ctx.get(), options.key.c_str(), &raw, 1);
  if (gpgme_err_code(err) == GPG_ERR_AMBIGUOUS_NAME)
    return fail(ErrorKind::kBadInput, "signing key '{}' names more than one secret key in {}; give its fingerprint",
                options.key, home_description(state->home));
  if (err || !raw)
    return fail(ErrorKind::kBadInput,
                "signing key '{}': no such secret key in {} ({}); list them with `gpg --list-secret-keys`",
                options.key, home_description(state->home), gpg_text(err ? err : gpg_error(GPG_ERR_NO_SECKEY)));
  Key key(raw);
  if (key->revoked || key->expired || key->disabled || !key->can_sign)
    return fail(ErrorKind::kBadInput, "signing key '{}' ({}) cannot sign: it is {}", options.key,
                key->fpr ? key->fpr : "?",
                key->revoked ? "revoked" : key->expired ? "expired" : key->disabled ? "disabled"
                                                                       : "not a signing key");
  state->fingerprint = key->fpr ? key->fpr : "";
  state->user_id = key->uids && key->uids->uid ? key->uids->uid : "";
  return SigningKey(std::move(state));
}

Result<std::string> SigningKey::sign(gpgme_data_t input, int mode_value) const {
  const State& state = *state_;
  auto mode = static_cast<gpgme_sig_mode_t>(mode_value);
  KILN_ASSIGN(Context ctx, new_context(state.home));
  gpgme_key_t raw = nullptr;
  if (gpgme_error_t err = gpgme_get_key(ctx.get(), state.fingerprint.c_str(), &raw, 1))
    return fail(ErrorKind::kFailed, "signing key {}: {}", state.fingerprint, gpg_text(err));
  Key key(raw);
  gpgme_signers_add(ctx.get(), key.get());
  gpgme_set_textmode(ctx.get(), mode == GPGME_SIG_MODE_CLEAR ? 1 : 0);
  if (state.has_passphrase) {
    gpgme_set_pinentry_mode(ctx.get(), GPGME_PINENTRY_MODE_LOOPBACK);
    gpgme_set_passphrase_cb(ctx.get(), give_passphrase, const_cast<std::string*>(&state.passphrase));
  }
  KILN_ASSIGN(Data out, empty_data());
  gpgme_error_t err = gpgme_op_sign(ctx.get(), input, out.get(), mode);
  if (err) {
    std::string hint;
    auto code = gpgme_err_code(err);
    if (code == GPG_ERR_BAD_PASSPHRASE) hint = ": wrong passphrase";
    else if (code == GPG_ERR_NO_PIN_ENTRY || code == GPG_ERR_NO_PASSPHRASE || code == GPG_ERR_CANCELED)
      hint = ": the key needs its passphrase; give it in a file (--passphrase-file) or unlock the key in gpg-agent";
    return fail(ErrorKind::kFailed, "cannot sign with key {} ({}){}", state.fingerprint, gpg_text(err), hint);
  }
  gpgme_sign_result_t result = gpgme_op_sign_result(ctx.get());
  if (!result || result->invalid_signers || !result->signatures)
    return fail(ErrorKind::kFailed, "cannot sign with key {}: gpg made no signature", state.fingerprint);
  return take_text(out.get());
}

Result<std::string> SigningKey::sign_detached(std::string_view data) const {
  KILN_ASSIGN(Data input, memory_data(data));
  return sign(input.get(), GPGME_SIG_MODE_DETACH);
}

Result<std::string> SigningKey::sign_detached_file(const fs::path& data) const {
  KILN_ASSIGN(UniqueFd fd, open_file(data, O_RDONLY));
  KILN_ASSIGN(Data input, fd_data(fd.get()));
  auto signature = sign(input.get(), GPGME_SIG_MODE_DETACH);
  if (!signature) return std::unexpected(std::move(signature).error().with_context(data.string()));
  return signature;
}

Result<std::string> SigningKey::clearsign(std::string_view text) const {
  KILN_ASSIGN(Data input, memory_data(text));
  return sign(input.get(), GPGME_SIG_MODE_CLEAR);
}

Result<std::string> SigningKey::export_public_key() const {
  KILN_ASSIGN(Context ctx, new_context(state_->home));
  KILN_ASSIGN(Data out, empty_data());
  if (gpgme_error_t err = gpgme_op_export(ctx.get(), state_->fingerprint.c_str(), 0, out.get()))
    return fail(ErrorKind::kFailed, "cannot export key {}: {}", state_->fingerprint, gpg_text(err));
  std::string text = take_text(out.get());
  if (text.empty()) return fail(ErrorKind::kFailed, "cannot export key {}: gpg gave nothing", state_->fingerprint);
  return text;
}

}  // namespace kiln
