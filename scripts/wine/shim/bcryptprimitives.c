/* Stub for Wine 8.0 (Debian bookworm), which has no bcryptprimitives.dll.
   Rust std >= 1.78 imports ProcessPrng from it on Windows. */
#include <windows.h>
#include <ntsecapi.h>   /* RtlGenRandom = advapi32!SystemFunction036 */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
