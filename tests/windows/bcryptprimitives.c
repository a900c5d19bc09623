/*
 * bcryptprimitives.c - a stand-in for Windows' bcryptprimitives.dll, for running the tests
 * under Wine only.
 *
 * Rust's std (1.78 and later) on Windows takes its random numbers (the seeds of HashMap's
 * RandomState) from ProcessPrng in bcryptprimitives.dll, which every Windows since 10 ships.
 * Wine 8.0 (Debian 12) has no bcryptprimitives.dll, so jsonbus.dll would not load there.
 * This DLL exports the one function, implemented with RtlGenRandom (advapi32's
 * SystemFunction036, which Wine has). CMake builds it only for a Windows target with a Wine
 * emulator and copies it next to the test programs; it is never installed or shipped: on real
 * Windows the system's own DLL is used.
 */
#include <windows.h>

/* advapi32's RtlGenRandom, exported by name as SystemFunction036. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* BOOL ProcessPrng(PBYTE pbData, SIZE_T cbData): fills the buffer; always TRUE on Windows. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000u ? 0x10000000u : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
