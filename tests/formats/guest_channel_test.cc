// The exec channel's codec, against canned bytes: how frames are laid out,
// that a stream cut anywhere gives the same frames, that large frames and
// large streams pass, and that a malformed frame is an error, not a crash
// and not a guess.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<Frame> decode_all(FrameDecoder& decoder) {
  std::vector<Frame> out;
  while (true) {
    auto frame = decoder.next();
    EXPECT_TRUE(frame) << frame.error();
    if (!frame || !*frame) return out;
    out.push_back(std::move(**frame));
  }
}

TEST(GuestChannel, AFrameIsLengthSessionTypeThenPayload) {
  EXPECT_EQ(encode_frame(0x01020304, FrameType::kStdout, "hi"),
            std::string("\x00\x00\x00\x02\x01\x02\x03\x04\x07hi", 11));
  EXPECT_EQ(encode_frame(7, FrameType::kStdin, ""), std::string("\x00\x00\x00\x00\x00\x00\x00\x07\x03", 9));
}

TEST(GuestChannel, AnAckCarriesAFourByteCount) {
  std::string frame = encode_ack(0x01020304);
  EXPECT_EQ(frame, std::string("\0\0\0\x04\0\0\0\0\x0b\x01\x02\x03\x04", 13));
  FrameDecoder decoder;
  decoder.feed(frame);
  auto decoded = decoder.next();
  ASSERT_TRUE(decoded && *decoded);
  EXPECT_EQ(decode_ack((*decoded)->payload), 0x01020304u);
  EXPECT_EQ(decode_ack("abc"), std::nullopt);
}

TEST(GuestChannel, AStreamCutAnywhereGivesTheSameFrames) {
  std::string stream = encode_frame(1, FrameType::kStdout, "first") + encode_frame(2, FrameType::kStderr, "") +
                       encode_frame(1, FrameType::kExit, R"({"code":3})");
  for (size_t piece = 1; piece <= stream.size(); ++piece) {
    FrameDecoder decoder;
    std::vector<Frame> frames;
    for (size_t at = 0; at < stream.size(); at += piece) {
      decoder.feed(stream.substr(at, piece));
      auto more = decode_all(decoder);
      frames.insert(frames.end(), more.begin(), more.end());
    }
    EXPECT_THAT(frames, ElementsAre(Frame{1, FrameType::kStdout, "first"}, Frame{2, FrameType::kStderr, ""},
                                    Frame{1, FrameType::kExit, R"({"code":3})"}))
        << "in pieces of " << piece;
    EXPECT_EQ(decoder.buffered(), 0u);
  }
}

TEST(GuestChannel, AnIncompleteFrameWaitsForTheRest) {
  std::string frame = encode_frame(5, FrameType::kStdout, "abcdef");
  FrameDecoder decoder;
  decoder.feed(frame.substr(0, frame.size() - 1));
  auto none = decoder.next();
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  decoder.feed(frame.substr(frame.size() - 1));
  EXPECT_THAT(decode_all(decoder), ElementsAre(Frame{5, FrameType::kStdout, "abcdef"}));
}

TEST(GuestChannel, BinaryPayloadsAndTheLargestFramePassIntact) {
  std::string payload(kMaxFramePayload, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 131 % 256);
  FrameDecoder decoder;
  // 64 MiB through one decoder: what was consumed does not pile up.
  for (int round = 0; round < 256; ++round) {
    decoder.feed(encode_frame(9, FrameType::kStdin, payload));
    auto frames = decode_all(decoder);
    ASSERT_EQ(frames.size(), 1u);
    ASSERT_EQ(frames[0].payload, payload);
  }
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(GuestChannel, AFrameOverTheLimitIsAnErrorAndTheDecoderStaysFailed) {
  std::string header = encode_frame(1, FrameType::kStdout, "");
  header[0] = '\x7f';  // a length of about 2 GiB
  FrameDecoder decoder;
  decoder.feed(header);
  auto frame = decoder.next();
  ASSERT_FALSE(frame);
  EXPECT_THAT(frame.error(), HasSubstr("over the 262144 a frame may carry"));
  decoder.feed(encode_frame(1, FrameType::kStdout, "fine"));
  EXPECT_FALSE(decoder.next()) << "the stream is out of step for good";
}

TEST(GuestChannel, AnUnknownTypeIsAnError) {
  std::string frame = encode_frame(1, FrameType::kStdout, "x");
  frame[8] = 0x42;
  FrameDecoder decoder;
  decoder.feed(frame);
  auto decoded = decoder.next();
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error(), "a frame of unknown type 66");
}

TEST(GuestChannel, AnExecRequestRoundTrips) {
  ExecRequest request;
  request.argv = {"sh", "-c", "echo \"$A\""};
  request.env = {"A=1", "B="};
  request.user = "www-data";
  request.workdir = "/srv";
  request.tty = true;
  request.rows = 50;
  request.cols = 132;
  request.timeout_seconds = 30;
  auto decoded = decode_exec_request(encode_exec_request(request));
  ASSERT_TRUE(decoded) << decoded.error();
  EXPECT_EQ(*decoded, request);
}

TEST(GuestChannel, ABadExecRequestSaysWhatIsWrong) {
  EXPECT_EQ(decode_exec_request("[1]").error(), "exec request: not a JSON object");
  EXPECT_EQ(decode_exec_request(R"({"argv": []})").error(), "exec request: no command");
  EXPECT_EQ(decode_exec_request(R"({"argv": "ls"})").error(), "exec request: a field of the wrong type");
  EXPECT_EQ(decode_exec_request(R"({"argv": ["ls"], "env": ["=1"]})").error(),
            "exec request: environment entry \"=1\" is not NAME=VALUE");
  EXPECT_EQ(decode_exec_request(R"({"argv": ["ls"], "user": ""})").error(), "exec request: no user");
}

TEST(GuestChannel, TheExitCodeIsAShellsOne) {
  EXPECT_EQ(shell_exit_code({0, 0, false}), 0);
  EXPECT_EQ(shell_exit_code({127, 0, false}), 127);
  EXPECT_EQ(shell_exit_code({0, 9, true}), 137);
  auto exit = decode_exec_exit(encode_exec_exit({0, 15, false}));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->signal, 15);
  EXPECT_FALSE(decode_exec_exit(R"({"code": 256})"));
  EXPECT_FALSE(decode_exec_exit("not json"));
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// A DMI table as the firmware lays it out: structures of a type, a length
// and a handle, each followed by its strings and a second NUL.
std::string dmi_structure(uint8_t type, std::string_view formatted_rest, std::vector<std::string> strings) {
  std::string out;
  out += static_cast<char>(type);
  out += static_cast<char>(4 + formatted_rest.size());
  out += std::string("\x01\x00", 2);
  out += formatted_rest;
  for (const std::string& text : strings) out += text + '\0';
  if (strings.empty()) out += '\0';
  return out + '\0';
}

TEST(AgentChannelFromDmi, FindsKilnsOemStringAmongTheOthers) {
  std::string table = dmi_structure(0, std::string("\x01\x02", 2), {"EFI Development Kit II / OVMF", "0.0.0"}) +
                      dmi_structure(11, std::string("\x02", 1), {"vendor=x", "kiln.agent=virtio:org.kiln.exec.0"}) +
                      dmi_structure(127, "", {});
  EXPECT_EQ(agent_channel_from_dmi(table), "virtio:org.kiln.exec.0");
}

TEST(AgentChannelFromDmi, AMachineKilnDidNotStartHasNone) {
  std::string table = dmi_structure(1, "", {"QEMU"}) + dmi_structure(11, std::string("\x01", 1), {"kiln.agen"}) +
                      dmi_structure(127, "", {});
  EXPECT_EQ(agent_channel_from_dmi(table), std::nullopt);
  EXPECT_EQ(agent_channel_from_dmi(""), std::nullopt);
  EXPECT_EQ(agent_channel_from_dmi(std::string("\x0b\x02", 2)), std::nullopt) << "a length shorter than a header";
  EXPECT_EQ(agent_channel_from_dmi(std::string("\x0b\x05\x01\x00\x01kiln.agent=x", 16)), std::nullopt)
      << "strings that never end";
}

}  // namespace
}  // namespace kiln
