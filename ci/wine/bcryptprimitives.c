/*
 * Minimal bcryptprimitives.dll for Wine < 9.x.
 *
 * Rust's std (1.78+) on Windows imports ProcessPrng from bcryptprimitives.dll
 * to seed HashMap keys etc. Wine 8.0 ships no bcryptprimitives.dll, so every
 * Rust .exe fails to load (STATUS_DLL_NOT_FOUND, 0xc0000135). This shim
 * implements ProcessPrng on top of RtlGenRandom (advapi32!SystemFunction036).
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *          bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom is exported by advapi32 under this name. */
BOOLEAN WINAPI SystemFunction036(PVOID RandomBuffer, ULONG RandomBufferLength);

BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData)
{
    while (cbData > 0) {
        ULONG chunk = cbData > 0x10000000 ? 0x10000000 : (ULONG)cbData;
        if (!SystemFunction036(pbData, chunk))
            return FALSE;
        pbData += chunk;
        cbData -= chunk;
    }
    /* Like the real implementation, ProcessPrng always reports success. */
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}
