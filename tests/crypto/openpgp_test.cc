// OpenPGP through gpgme: what kiln signs, gpg accepts; what kiln verifies is
// trusted only when a key the caller named made it, and every refusal says
// why.
#include "crypto/openpgp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/crypto/gpg_test_home.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::GpgTestHome;
using testing::read_text;
using testing::ScratchDir;
using testing::write_text;

class OpenPgpTest : public ::testing::Test {
 protected:
  SigningKey signer(const std::string& passphrase_file = "") {
    auto key = SigningKey::open({publisher_.fingerprint(), publisher_.home(), passphrase_file});
    if (!key) throw std::runtime_error(key.error().to_string());
    return std::move(*key);
  }
  TrustedKeys trusting(const GpgTestHome& home) {
    auto keys = TrustedKeys::load(home.export_public(dir_ / "trusted.gpg"));
    if (!keys) throw std::runtime_error(keys.error().to_string());
    return std::move(*keys);
  }

  ScratchDir dir_;
  GpgTestHome publisher_{"Kiln Publisher"};
};

TEST_F(OpenPgpTest, ADetachedSignatureVerifiesAndNamesTheSigner) {
  auto signature = signer().sign_detached("feed contents\n");
  ASSERT_TRUE(signature) << signature.error().to_string();
  EXPECT_THAT(*signature, HasSubstr("-----BEGIN PGP SIGNATURE-----"));
  auto info = trusting(publisher_).verify_detached("feed contents\n", *signature, "feed", "feed.asc");
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->fingerprint, publisher_.fingerprint());
  EXPECT_EQ(info->user_id, publisher_.user_id());
  EXPECT_GT(info->created, 0);
}

TEST_F(OpenPgpTest, GpgVerifyAcceptsKilnsDetachedSignature) {
  write_text(dir_ / "data", "some bytes\n");
  auto signature = signer().sign_detached_file(dir_ / "data");
  ASSERT_TRUE(signature) << signature.error().to_string();
  write_text(dir_ / "data.asc", *signature);
  auto verified = publisher_.gpg_verify({(dir_ / "data.asc").string(), (dir_ / "data").string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.err, HasSubstr("Good signature"));
}

TEST_F(OpenPgpTest, AClearsignedTextVerifiesAndYieldsOnlyTheSignedText) {
  std::string text = "[image]\nname=x\n- a line starting with a dash\n";
  auto signed_text = signer().clearsign(text);
  ASSERT_TRUE(signed_text) << signed_text.error().to_string();
  EXPECT_THAT(*signed_text, HasSubstr("-----BEGIN PGP SIGNED MESSAGE-----"));
  write_text(dir_ / "index.asc", "junk before the armor\n" + *signed_text + "junk after\n");
  auto verified = trusting(publisher_).verify_clearsigned(read_text(dir_ / "index.asc"), "index.asc");
  ASSERT_TRUE(verified) << verified.error().to_string();
  EXPECT_EQ(verified->text, text);
  EXPECT_EQ(verified->signer.fingerprint, publisher_.fingerprint());
  write_text(dir_ / "clean.asc", *signed_text);
  auto gpg = publisher_.gpg_verify({(dir_ / "clean.asc").string()});
  EXPECT_EQ(gpg.exit_code, 0) << gpg.err;
}

TEST_F(OpenPgpTest, ChangedDataIsABadSignature) {
  auto signature = signer().sign_detached("original");
  ASSERT_TRUE(signature);
  auto info = trusting(publisher_).verify_detached("originaL", *signature, "manifest.txt", "mf-signature.asc");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(info.error().message, HasSubstr("mf-signature.asc: BAD signature over manifest.txt"));
}

TEST_F(OpenPgpTest, AChangedClearsignedTextIsABadSignature) {
  auto signed_text = signer().clearsign("revision=1\n");
  ASSERT_TRUE(signed_text);
  std::string tampered = *signed_text;
  tampered.replace(tampered.find("revision=1"), 10, "revision=2");
  auto verified = trusting(publisher_).verify_clearsigned(tampered, "index.asc");
  ASSERT_FALSE(verified);
  EXPECT_THAT(verified.error().message, HasSubstr("BAD signature"));
}

TEST_F(OpenPgpTest, ASignatureByAKeyOutsideTheTrustedSetIsRefused) {
  GpgTestHome stranger("Someone Else");
  auto signature = signer().sign_detached("data");
  ASSERT_TRUE(signature);
  auto keys = trusting(stranger);
  auto info = keys.verify_detached("data", *signature, "data", "data.asc");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(info.error().message, HasSubstr("not among the trusted keys in"));
  EXPECT_THAT(info.error().message, HasSubstr(publisher_.fingerprint().substr(24)));
}

TEST_F(OpenPgpTest, TheUsersOwnKeyringIsNeverConsulted) {
  // GNUPGHOME points at the publisher's home, which holds its key: a
  // verifier that fell back on it would accept the signature.
  GpgTestHome stranger("Someone Else");
  auto signature = signer().sign_detached("data");
  ASSERT_TRUE(signature);
  ::setenv("GNUPGHOME", publisher_.home().c_str(), 1);
  auto info = trusting(stranger).verify_detached("data", *signature, "data", "data.asc");
  ::unsetenv("GNUPGHOME");
  EXPECT_FALSE(info);
}

TEST_F(OpenPgpTest, TextThatIsNoSignatureIsRefused) {
  auto info = trusting(publisher_).verify_detached("data", "hello, not a signature\n", "data", "data.asc");
  ASSERT_FALSE(info);
  EXPECT_THAT(info.error().message, HasSubstr("data.asc: not an OpenPGP signature"));
  auto clear = trusting(publisher_).verify_clearsigned("[x]\nplain text\n", "index.asc");
  ASSERT_FALSE(clear);
  EXPECT_EQ(clear.error().kind, ErrorKind::kUntrusted);
}

TEST_F(OpenPgpTest, AKeyringWithoutKeysIsAnError) {
  write_text(dir_ / "empty.gpg", "not a key\n");
  auto keys = TrustedKeys::load(dir_ / "empty.gpg");
  ASSERT_FALSE(keys);
  EXPECT_THAT(keys.error().message, HasSubstr("empty.gpg: holds no OpenPGP public key"));
  auto missing = TrustedKeys::load(dir_ / "missing.gpg");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("missing.gpg"));
}

TEST_F(OpenPgpTest, AnArmoredKeyringHoldingSeveralKeysTrustsEachOfThem) {
  GpgTestHome other("Second Publisher");
  std::string keys = read_text(publisher_.export_public(dir_ / "a.asc", true)) +
                     read_text(other.export_public(dir_ / "b.asc", true));
  auto trusted = TrustedKeys::from_memory(keys, "both.asc");
  ASSERT_TRUE(trusted) << trusted.error().to_string();
  EXPECT_THAT(trusted->fingerprints(), ::testing::UnorderedElementsAre(publisher_.fingerprint(), other.fingerprint()));
  auto other_signer = SigningKey::open({other.fingerprint(), other.home(), ""});
  ASSERT_TRUE(other_signer);
  auto signature = other_signer->sign_detached("x");
  ASSERT_TRUE(signature);
  auto info = trusted->verify_detached("x", *signature, "x", "x.asc");
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->fingerprint, other.fingerprint());
}

TEST_F(OpenPgpTest, AnUnknownSigningKeyNamesTheKeyAndTheHome) {
  auto key = SigningKey::open({"nobody@nowhere.invalid", publisher_.home(), ""});
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(key.error().message, HasSubstr("nobody@nowhere.invalid"));
  EXPECT_THAT(key.error().message, HasSubstr(publisher_.home().string()));
}

TEST_F(OpenPgpTest, APassphraseComesFromAFileAndNeverShowsInErrors) {
  GpgTestHome locked("Locked Publisher", "correct horse");
  write_text(dir_ / "good.pw", "correct horse\n");
  write_text(dir_ / "bad.pw", "wrong battery\n");
  auto good = SigningKey::open({locked.fingerprint(), locked.home(), dir_ / "good.pw"});
  ASSERT_TRUE(good) << good.error().to_string();
  auto signature = good->sign_detached("data");
  ASSERT_TRUE(signature) << signature.error().to_string();
  auto info = trusting(locked).verify_detached("data", *signature, "data", "data.asc");
  EXPECT_TRUE(info);

  // A fresh agent, so that the good passphrase is not cached.
  testing::run_program({"gpgconf", "--homedir", locked.home().string(), "--kill", "gpg-agent"});
  auto bad = SigningKey::open({locked.fingerprint(), locked.home(), dir_ / "bad.pw"});
  ASSERT_TRUE(bad);
  auto refused = bad->sign_detached("data");
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().to_string(), HasSubstr("passphrase"));
  EXPECT_THAT(refused.error().to_string(), Not(HasSubstr("wrong battery")));
}

TEST_F(OpenPgpTest, TheExportedPublicKeyIsAKeyringOthersCanTrust) {
  auto key = signer();
  auto exported = key.export_public_key();
  ASSERT_TRUE(exported) << exported.error().to_string();
  auto trusted = TrustedKeys::from_memory(*exported, "exported");
  ASSERT_TRUE(trusted) << trusted.error().to_string();
  EXPECT_EQ(trusted->fingerprints().front(), publisher_.fingerprint());
}

}  // namespace
}  // namespace kiln
