// Package ev2 is the cryptography of MIFARE DESFire EV2/EV3 secure
// messaging (the same scheme NTAG 424 DNA uses), written once for both
// ends: the reader side in cardfmt/desfire and the card model in
// reader/sim/chip. It covers AuthenticateEV2First/NonFirst (random
// numbers, session keys from SV1/SV2 with AES-CMAC), the command counter
// and transaction identifier, the truncated CMAC (MACt), the IVs of
// CommMode.Full with ISO/IEC 9797-1 padding method 2, and ChangeKey's
// key data with the CRC32 DESFire appends.
//
// The tests pin each construction to a worked example NXP published
// (AN12343, AN12196: EV2First, session keys, IVs, MACt, CommMode.Full,
// ChangeKey) or to the standard that defines it (RFC 4493, the CRC
// catalogue); AuthenticateEV2NonFirst, which no example shows, is tested
// against the reader and card sides agreeing.
//
// It is pure computation: it must not import bridge, cardfmt or reader.
package ev2
