/*
 * bcryptprimitives.dll for Wine 8, test machines only.
 *
 * Go 1.22 and later take their random numbers from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10 and later have and Wine added only
 * in 9.x. The Windows tests run the bridge under Debian's Wine 8 with this
 * stand-in in the prefix's system32: ProcessPrng filled by RtlGenRandom
 * (advapi32's SystemFunction036), which Wine 8 has. Never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
