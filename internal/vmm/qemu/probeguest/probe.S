/*
 * The accelerator probe's guest: a few hundred bytes of x86 that do what a
 * kernel needs of the CPU early, and say how far they got on the serial
 * port. Nested KVM fails in each of these places on real hosts: the MSR
 * writes of the mode switch, the first touch of fresh guest pages (it
 * crawls at a few MB/s), and emulating a locked cmpxchg16b.
 *
 * It boots through the PVH entry (32-bit protected mode, paging off, flat
 * segments), as banger's kernels do. Rebuild probe.elf with `go generate`.
 */
	.intel_syntax noprefix

	.section .note.Xen, "a"
	.balign 4
	.long 4			/* name size: "Xen\0" */
	.long 8			/* descriptor size */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.quad _start

	.text
	.code32
	.globl _start
_start:
	cli
	mov esp, offset stack_top
	mov esi, offset msg_start
	call puts32

	/* Identity-map the first GiB with 2 MiB pages. */
	mov edi, offset pd
	mov eax, 0x83		/* present, writable, 2 MiB page */
	xor ecx, ecx
1:	mov [edi + ecx*8], eax
	mov dword ptr [edi + ecx*8 + 4], 0
	add eax, 0x200000
	inc ecx
	cmp ecx, 512
	jne 1b
	mov eax, offset pd
	or eax, 3
	mov [pdpt], eax
	mov eax, offset pdpt
	or eax, 3
	mov [pml4], eax
	mov eax, offset pml4
	mov cr3, eax

	mov eax, cr4
	or eax, 0x20		/* PAE */
	mov cr4, eax
	mov ecx, 0xc0000080	/* EFER */
	rdmsr
	or eax, 0x100		/* long mode enable */
	wrmsr
	mov eax, cr0
	or eax, 0x80000001	/* paging, protection */
	mov cr0, eax
	lgdt [gdtr]
	ljmp 0x08, offset long_mode

	.code64
long_mode:
	mov ax, 0x10
	mov ds, ax
	mov es, ax
	mov ss, ax
	lea rsi, [rip + msg_long]
	call puts

	/* Touch 48 MiB of fresh memory from 16 MiB up, byte by byte, as a
	 * kernel clears its BSS. */
	mov rdi, 0x1000000
	mov rcx, 0x3000000
	xor eax, eax
	rep stosb
	lea rsi, [rip + msg_mem]
	call puts

	/* A locked 16-byte compare-exchange must swap {1,2} for {3,4}. */
	lea rsi, [rip + cas]
	mov qword ptr [rsi], 1
	mov qword ptr [rsi + 8], 2
	mov rax, 1
	mov rdx, 2
	mov rbx, 3
	mov rcx, 4
	lock cmpxchg16b [rsi]
	jnz fail
	cmp qword ptr [rsi], 3
	jne fail
	cmp qword ptr [rsi + 8], 4
	jne fail
	lea rsi, [rip + msg_ok]
	call puts
halt:
	cli
	hlt
	jmp halt
fail:
	lea rsi, [rip + msg_fail]
	call puts
	jmp halt

/* puts writes the NUL-terminated string at rsi to COM1. */
puts:
	mov dx, 0x3f8
2:	lodsb
	test al, al
	jz 3f
	out dx, al
	jmp 2b
3:	ret

	.code32
puts32:
	mov dx, 0x3f8
4:	lodsb
	test al, al
	jz 5f
	out dx, al
	jmp 4b
5:	ret

	.section .rodata
	.balign 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
gdtr:
	.word gdtr - gdt - 1
	.long gdt
msg_start:	.asciz "banger-probe: start\n"
msg_long:	.asciz "banger-probe: long mode\n"
msg_mem:	.asciz "banger-probe: memory\n"
msg_ok:		.asciz "banger-probe: ok\n"
msg_fail:	.asciz "banger-probe: cmpxchg16b failed\n"

	.bss
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4096
	.balign 16
cas:	.skip 16
	.skip 4096
stack_top:
