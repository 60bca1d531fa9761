"""The libvirt provider and everything only it uses: libvirtd where no service manager
runs it (``host``), NFS from userspace (``nfs``) and the Vagrant box (``box``)."""
