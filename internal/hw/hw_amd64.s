#include "textflag.h"

// func Cycles() uint64
TEXT ·Cycles(SB), NOSPLIT, $0-8
	RDTSC
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, ret+0(FP)
	RET

// func PrefetchW(p *byte, n int)
TEXT ·PrefetchW(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	LEAQ (AX)(CX*1), CX
	ANDQ $~63, AX
pw:
	CMPQ AX, CX
	JAE  pwdone
	// PREFETCHW (AX): 0F 0D /1, which the Go assembler does not name.
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08
	ADDQ $64, AX
	JMP  pw
pwdone:
	RET

// func Prefetch(p *byte, n int)
TEXT ·Prefetch(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	LEAQ (AX)(CX*1), CX
	ANDQ $~63, AX
pr:
	CMPQ AX, CX
	JAE  prdone
	PREFETCHT0 (AX)
	ADDQ $64, AX
	JMP  pr
prdone:
	RET

// func StoreRelease32(p *uint32, v uint32)
TEXT ·StoreRelease32(SB), NOSPLIT, $0-12
	MOVQ p+0(FP), AX
	MOVL v+8(FP), CX
	MOVL CX, (AX)
	RET

// func Fence()
TEXT ·Fence(SB), NOSPLIT, $0-0
	LOCK
	ORQ $0, (SP)
	RET
