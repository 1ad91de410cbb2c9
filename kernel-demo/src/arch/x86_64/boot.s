// Boot code: the PVH ELF note, the BSP's 32-bit entry into long mode, and the
// 16-bit AP trampoline. Assembled by `global_asm!` in boot.rs (Intel syntax;
// far jumps and the 16-bit lgdt use AT&T, see notes/kernel-boot.md).

// ---- PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18) = 8-byte address of pvh_start.
.section .note.pvh, "a", @note
.balign 4
    .long 4, 8, 18          // namesz, descsz, type
    .asciz "Xen"
    .balign 4
    .quad pvh_start

// ---- Page tables and stacks (zero-filled by the loader).
.section .bss
.balign 4096
.global boot_pml4
boot_pml4:  .skip 4096
.global boot_pdpt
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4          // four page directories: the first 4 GiB
boot_stack: .skip 65536
boot_stack_top:

.section .rodata
.balign 8
gdt64:
    .quad 0
    .quad 0x00af9a000000ffff        // 0x08: 64-bit code, ring 0
    .quad 0x00cf92000000ffff        // 0x10: data, ring 0
gdt64_end:
.global gdt64_ptr
gdt64_ptr:
    .word gdt64_end - gdt64 - 1
    .quad gdt64

// ---- BSP entry. QEMU enters in 32-bit protected mode, paging off,
//      interrupts off, no stack; EBX = physical address of hvm_start_info.
.section .text.boot, "ax"
.code32
.global pvh_start
pvh_start:
    mov esi, ebx                    // keep start_info for kmain
    mov esp, offset boot_stack_top

    // for i in 0..2048: boot_pd[i] = (i << 21) | PRESENT | WRITE | HUGE
    // 2 MiB pages identity-map 0..4 GiB: the kernel, 0x8000, the LAPIC MMIO.
    mov edi, offset boot_pd
    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [edi + ecx * 8], eax        // the high dword stays 0 (bss)
    inc ecx
    cmp ecx, 2048
    jb 1b

    // for g in 0..4: boot_pdpt[g] = &boot_pd[g * 512] | PRESENT | WRITE
    mov edi, offset boot_pdpt
    mov eax, offset boot_pd
    or eax, 3
    xor ecx, ecx
2:  mov [edi + ecx * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jb 2b

    // boot_pml4[0] = &boot_pdpt | PRESENT | WRITE
    mov eax, offset boot_pdpt
    or eax, 3
    mov [boot_pml4], eax

    call enter_long_mode32
    // ljmp 0x08:bsp_long  (a far jump reloads CS with the 64-bit selector)
.att_syntax prefix
    ljmp $0x08, $bsp_long
.intel_syntax noprefix

// Shared by the BSP and the APs (32-bit, flat segments, paging off):
// cr4.PAE = 1; cr3 = &boot_pml4; EFER.LME = 1; cr0 |= PG | PE; lgdt gdt64.
enter_long_mode32:
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
    lgdt [gdt64_ptr]
    ret

.code64
bsp_long:
    // Data segments = 0x10; rsp = boot_stack_top; kmain(start_info).
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, esi
    call kmain
3:  cli
    hlt
    jmp 3b

ap_long:
    // Same as bsp_long, but the stack and CPU index come from the BSP:
    // rsp = AP_STACK_TOP; ap_main(AP_INDEX).
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, [AP_STACK_TOP]
    mov rdi, [AP_INDEX]
    call ap_main
4:  cli
    hlt
    jmp 4b

// ---- AP trampoline, copied to physical 0x8000 (SIPI vector 0x08). It runs at
//      CS = 0x0800, IP = 0, so addresses inside it are `label - ap_tramp_start`.
.code16
.global ap_tramp_start
ap_tramp_start:
    cli
    mov ax, cs
    mov ds, ax
.att_syntax prefix
    lgdtl (tramp_gdtr - ap_tramp_start)
.intel_syntax noprefix
    mov eax, cr0
    or eax, 1                       // cr0.PE: protected mode, paging still off
    mov cr0, eax
.att_syntax prefix
    ljmpl $0x08, $(0x8000 + tramp_pm32 - ap_tramp_start)
.intel_syntax noprefix
.code32
tramp_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    // Absolute kernel addresses work here: the code is now flat 32-bit.
    mov esp, 0x8000                 // a scratch stack below the trampoline
    // An absolute call: a relative one would be off by the copy distance.
    mov eax, offset enter_long_mode32
    call eax
.att_syntax prefix
    ljmp $0x08, $ap_long
.intel_syntax noprefix
.balign 8
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        // 0x08: 32-bit flat code
    .quad 0x00cf92000000ffff        // 0x10: 32-bit flat data
tramp_gdtr:
    .word 23
    .long 0x8000 + tramp_gdt - ap_tramp_start
.global ap_tramp_end
ap_tramp_end:
.code64
