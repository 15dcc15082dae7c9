/** Green when the user has a connection anywhere in the cluster. */
export function PresenceDot({ userId, online }: { userId: string; online: boolean }) {
  return (
    <span
      className={online ? 'dot on' : 'dot'}
      data-testid="presence-dot"
      data-user-id={userId}
      data-online={online ? 'true' : 'false'}
      role="img"
      aria-label={online ? 'online' : 'offline'}
    />
  )
}
