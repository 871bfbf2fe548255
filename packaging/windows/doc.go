// Package windows holds the Windows installer's source
// (encoder-bridge.wxs, built by scripts/build-msi.sh with wixl) and its
// tests: the MSI's tables, and the Windows build installed, run as a
// service, upgraded and removed under Wine against a cloud on loopback.
//
// wineprng holds a test-only stand-in for a DLL that Debian's Wine 8
// lacks and Go's Windows runtime needs; it is never shipped.
package windows
